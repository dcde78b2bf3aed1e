"""``manage.py reencrypt_webhook_secrets``: after putting a new key first in ``WEBHOOK_SECRET_KEYS``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from integrations.services import webhook_secrets_reencrypt


class Command(BaseCommand):
    help = "Encrypt every webhook endpoint secret again under the first of WEBHOOK_SECRET_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = webhook_secrets_reencrypt()
        self.stdout.write(f"Re-encrypted {count} webhook endpoint secret(s) under the first key.")
