"""``manage.py purge_audit [--days N]``: apply the audit log's retention now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.services import audit_purge


class Command(BaseCommand):
    help = "Delete audit rows older than AUDIT_RETENTION_DAYS (or --days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = audit_purge(older_than_days=options["days"])
        self.stdout.write(f"Deleted {deleted} audit row(s).")
