"""Webhook endpoint secrets are encrypted at rest; keys rotate without losing them (integrations.encryption)."""

from __future__ import annotations

import importlib
import secrets
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from integrations.encryption import SecretUnreadable, fernet_key
from integrations.models import WebhookEndpoint
from integrations.services import webhook_endpoint_create
from tests.integrations.test_webhooks import make_endpoint

pytestmark = pytest.mark.django_db

OLD, NEW = secrets.token_urlsafe(50), secrets.token_urlsafe(50)
migration = importlib.import_module("integrations.migrations.0003_encrypt_webhook_secrets")


@pytest.fixture(autouse=True)
def hooks_resolve(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["hooks.example.test"] = ["93.184.216.34"]


def stored(endpoint: WebhookEndpoint) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM integrations_webhookendpoint WHERE id = %s", [endpoint.pk])
        return cursor.fetchone()[0]


def readable_with(key: str, token: str) -> str:
    return Fernet(fernet_key(key)).decrypt(token.encode()).decode()


def test_the_column_holds_a_token_of_the_first_key_and_the_model_the_secret(settings: Any, tenant: Any) -> None:
    settings.WEBHOOK_SECRET_KEYS = [NEW, OLD]
    endpoint = webhook_endpoint_create(
        tenant=tenant, created_by=None, url="https://hooks.example.test/in", events=["document.ready"]
    )
    plain = endpoint.secret
    assert plain.startswith("whsec_")
    column = stored(endpoint)
    assert plain not in column and readable_with(NEW, column) == plain
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == plain


def test_rotating_the_key_keeps_every_secret(settings: Any, tenant: Any) -> None:
    settings.WEBHOOK_SECRET_KEYS = [OLD]
    endpoints = [make_endpoint(tenant, f"https://hooks.example.test/{i}") for i in range(3)]
    plains = {e.pk: WebhookEndpoint.objects.get(pk=e.pk).secret for e in endpoints}

    settings.WEBHOOK_SECRET_KEYS = [NEW, OLD]  # 1. the new key first, the old one still decrypts
    assert {e.pk: e.secret for e in WebhookEndpoint.objects.all()} == plains
    out = StringIO()
    call_command("reencrypt_webhook_secrets", stdout=out)  # 2. every row under the new key
    assert "Re-encrypted 3 " in out.getvalue()

    settings.WEBHOOK_SECRET_KEYS = [NEW]  # 3. the old key dropped
    assert {e.pk: e.secret for e in WebhookEndpoint.objects.all()} == plains
    assert all(readable_with(NEW, stored(e)) == plains[e.pk] for e in endpoints)


def test_a_secret_no_key_decrypts_is_refused_naming_the_setting(settings: Any, tenant: Any) -> None:
    settings.WEBHOOK_SECRET_KEYS = [OLD]
    endpoint = make_endpoint(tenant, "https://hooks.example.test/in")
    settings.WEBHOOK_SECRET_KEYS = [NEW]
    with pytest.raises(SecretUnreadable, match="WEBHOOK_SECRET_KEYS"):
        WebhookEndpoint.objects.get(pk=endpoint.pk)


def test_the_migration_encrypts_plain_rows_and_decrypts_them_backwards(settings: Any, tenant: Any) -> None:
    settings.WEBHOOK_SECRET_KEYS = [OLD]
    endpoint = make_endpoint(tenant, "https://hooks.example.test/in")
    plain = "whsec_" + secrets.token_urlsafe(32)
    with connection.cursor() as cursor:  # as the rows stood before 0003
        cursor.execute("UPDATE integrations_webhookendpoint SET secret = %s WHERE id = %s", [plain, endpoint.pk])

    with connection.schema_editor() as editor:
        migration.encrypt_plain_secrets(None, editor)
    assert stored(endpoint) != plain and WebhookEndpoint.objects.get(pk=endpoint.pk).secret == plain

    with connection.schema_editor() as editor:
        migration.decrypt_secrets(None, editor)
    assert stored(endpoint) == plain
