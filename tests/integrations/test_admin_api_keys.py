"""The operators' Django admin for API keys: the list and the change page show keys without any
secret, keys cannot be added there, and the "revoke" action revokes (the key then gets 401 over REST)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from integrations.models import APIKey
from tests.api_keys import key_client
from tests.crosstenant import assert_envelope

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/integrations/apikey/"


@pytest.fixture
def operator_client(db: Any) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("ops@documind.test", "an-operator-password-42"))
    return client


def assert_no_secret(html: str, key: APIKey, raw: str) -> None:
    assert "secret_hash" not in html and "secret hash" not in html.lower()
    secret = raw.split("_", 2)[2]  # dmk_<prefix>_<secret>: the secret may itself hold "_"
    assert len(secret) == 43, raw
    assert key.secret_hash not in html and raw not in html and secret not in html


def test_operator_sees_keys_without_secrets(operator_client: Client, make_key: Any, other_tenant: Any) -> None:
    key, raw = make_key(["documents:read", "search"], name="nightly-import")
    foreign, foreign_raw = make_key(["chat"], tenant=other_tenant, name="their-bot")
    listing = operator_client.get(CHANGELIST)
    assert listing.status_code == 200
    html = listing.content.decode()
    for shown, secret in ((key, raw), (foreign, foreign_raw)):  # operators see every tenant's keys
        assert shown.name in html and shown.prefix in html
        assert_no_secret(html, shown, secret)
    found = operator_client.get(CHANGELIST, {"q": key.prefix}).content.decode()
    assert key.name in found and foreign.name not in found

    page = operator_client.get(f"{CHANGELIST}{key.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert key.name in html and key.prefix in html
    assert_no_secret(html, key, raw)
    # keys are made through the API (the secret is shown once there), never here
    assert operator_client.get(f"{CHANGELIST}add/").status_code == 403


def test_revoke_action_revokes_and_the_key_gets_401(operator_client: Client, make_key: Any) -> None:
    key, raw = make_key(["documents:read"])
    kept, kept_raw = make_key(["documents:read"])
    assert key_client(raw).get("/api/v1/documents/").status_code == 200
    response = operator_client.post(
        CHANGELIST, {"action": "revoke", "_selected_action": [str(key.pk)], "index": "0"}, follow=True
    )
    assert response.status_code == 200 and "Revoked 1 key(s)." in response.content.decode()
    key.refresh_from_db()
    kept.refresh_from_db()
    assert key.revoked_at is not None and not key.user.is_active
    assert kept.revoked_at is None
    assert_envelope(key_client(raw).get("/api/v1/documents/"), 401, "authentication_failed")
    assert key_client(kept_raw).get("/api/v1/documents/").status_code == 200
