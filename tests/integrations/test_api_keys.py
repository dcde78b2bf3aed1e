"""API keys: creation and listing by tenant admins, the key as a credential, scopes, revocation,
expiry, tenant binding, the service account, per-key rate limits and quotas."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import User
from integrations.keys import hash_key
from integrations.models import APIKey
from tests.api_keys import key_client
from tests.crosstenant import IsolatedResourceTests, assert_envelope

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys/"


def test_admin_creates_key_secret_shown_once_and_stored_hashed(admin_api: Any) -> None:
    response = admin_api.post(
        URL, {"name": "ingest bot", "scopes": ["documents:write", "documents:read"]}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    raw = body["key"]
    assert raw.startswith("dmk_") and body["prefix"] in raw
    assert body["scopes"] == ["documents:read", "documents:write"]
    assert body["status"] == "active" and body["created_by"] == "admin@acme.test"
    key = APIKey.objects.get(pk=body["id"])
    assert key.secret_hash == hash_key(raw) and raw not in key.secret_hash
    # listed and fetched without any secret
    listed = admin_api.get(URL).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    for row in (listed[0], admin_api.get(f"{URL}{body['id']}/").json()):
        assert "key" not in row and "secret_hash" not in row
        assert raw not in str(row)
    # the service account: a user of the tenant, no password, role from the scopes, not a person
    account = key.user
    assert account.tenant_id == key.tenant_id and account.is_service_account
    assert not account.has_usable_password() and account.role == User.Role.MEMBER
    assert account.email not in str(admin_api.get("/api/v1/users/").json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["everything"]}, "scopes"),
        ({"name": "", "scopes": ["search"]}, "name"),
        ({"name": "x", "scopes": ["search"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "scopes": ["search"], "rate_limit_per_minute": 0}, "rate_limit_per_minute"),
        ({"name": "x", "scopes": "search"}, "scopes"),
    ],
)
def test_bad_key_requests_are_400(admin_api: Any, body: dict[str, Any], field: str) -> None:
    error = assert_envelope(admin_api.post(URL, body, format="json"), 400, "validation_error")
    assert field in error["details"].get("fields", {}), error


def test_duplicate_name_is_409(admin_api: Any) -> None:
    assert admin_api.post(URL, {"name": "bot", "scopes": ["search"]}, format="json").status_code == 201
    assert_envelope(admin_api.post(URL, {"name": "bot", "scopes": ["chat"]}, format="json"), 409, "conflict")


def test_only_admins_manage_keys(api: Any, anon_api: Any) -> None:
    assert_envelope(api.get(URL), 403, "permission_denied")
    assert_envelope(api.post(URL, {"name": "x", "scopes": ["search"]}, format="json"), 403, "permission_denied")
    assert_envelope(anon_api.get(URL), 401, "not_authenticated")


def test_key_works_without_tenant_header_and_a_disagreeing_header_is_refused(
    make_key: Any, other_tenant: Any, tenant: Any
) -> None:
    _, raw = make_key(["documents:read"])
    assert key_client(raw).get("/api/v1/documents/").status_code == 200
    assert key_client(raw, tenant.slug).get("/api/v1/documents/").status_code == 200
    assert key_client(raw, str(tenant.pk)).get("/api/v1/documents/").status_code == 200
    error = assert_envelope(key_client(raw, other_tenant.slug).get("/api/v1/documents/"), 401, "authentication_failed")
    assert "another tenant" in error["message"]


@pytest.mark.parametrize(
    "raw",
    [
        "dmk_0123456789ab_" + "A" * 43,  # well-formed, unknown
        "not-a-key",
        "",
        "dmk_0123456789ab_short",
    ],
)
def test_wrong_keys_are_401(raw: str, tenant: Any) -> None:
    for header in (None, tenant.slug):
        assert_envelope(key_client(raw, header).get("/api/v1/documents/"), 401, "authentication_failed")


def test_right_prefix_wrong_secret_is_401(make_key: Any) -> None:
    _, raw = make_key(["documents:read"])
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert_envelope(key_client(forged).get("/api/v1/documents/"), 401, "authentication_failed")


def test_revoked_key_is_401_at_once(admin_api: Any, make_key: Any) -> None:
    key, raw = make_key(["documents:read"])
    client = key_client(raw)
    assert client.get("/api/v1/documents/").status_code == 200
    assert admin_api.delete(f"{URL}{key.pk}/").status_code == 204
    error = assert_envelope(client.get("/api/v1/documents/"), 401, "authentication_failed")
    assert "revoked" in error["message"]
    row = admin_api.get(f"{URL}{key.pk}/").json()
    assert row["status"] == "revoked" and row["revoked_at"]
    assert admin_api.delete(f"{URL}{key.pk}/").status_code == 204  # idempotent


def test_expired_key_is_401(make_key: Any) -> None:
    key, raw = make_key(["documents:read"], expires_at=timezone.now() + timedelta(hours=1))
    assert key_client(raw).get("/api/v1/documents/").status_code == 200
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    error = assert_envelope(key_client(raw).get("/api/v1/documents/"), 401, "authentication_failed")
    assert "expired" in error["message"]


def test_inactive_tenant_refuses_its_keys(make_key: Any, tenant: Any) -> None:
    _, raw = make_key(["documents:read"])
    type(tenant).objects.filter(pk=tenant.pk).update(is_active=False)
    response = key_client(raw).get("/api/v1/documents/")
    assert response.status_code in (401, 403)


def test_last_used_is_recorded(make_key: Any) -> None:
    key, raw = make_key(["documents:read"])
    assert key.last_used_at is None
    key_client(raw).get("/api/v1/documents/")
    key.refresh_from_db()
    assert key.last_used_at is not None


# --- scopes on every endpoint ----------------------------------------------------------------

# (method, path, body, scope that allows it); ids are filled in by the test
MATRIX: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
    ("get", "/api/v1/documents/", None, "documents:read"),
    ("get", "/api/v1/projects/", None, "documents:read"),
    ("post", "/api/v1/projects/", {"name": "P"}, "documents:write"),
    ("get", "/api/v1/tasks/", None, "documents:read"),
    ("post", "/api/v1/tasks/", {"title": "todo"}, "documents:write"),
    ("post", "/api/v1/search/", {"query": "vacation"}, "search"),
    ("get", "/api/v1/chat/sessions/", None, "chat"),
    ("post", "/api/v1/chat/sessions/", {"title": "t"}, "chat"),
    ("get", "/api/v1/users/", None, "admin"),
    ("patch", "/api/v1/tenant/", {"name": "Renamed"}, "admin"),
    ("get", "/api/v1/api-keys/", None, "admin"),
    ("get", "/api/v1/audit/", None, "admin"),
    ("get", "/api/v1/webhooks/", None, "admin"),
    ("get", "/api/v1/tenant/", None, "*"),
    ("get", "/api/v1/usage/", None, "*"),
    ("get", "/api/v1/auth/me", None, "*"),
    ("post", "/api/v1/api-keys/", {"name": "minted", "scopes": ["search"]}, None),  # an admin key cannot mint
    ("post", "/api/v1/auth/password/change", {"old_password": "a", "new_password": "b"}, None),
    ("post", "/api/v1/auth/logout", {"refresh": "x"}, None),
]
ALL_SCOPES = ["documents:read", "documents:write", "search", "chat", "admin"]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX)
def test_scopes_are_enforced_on_every_endpoint(
    make_key: Any, method: str, path: str, body: Any, allowed: str | None
) -> None:
    def unique(body: Any) -> Any:  # names must not collide between the calls
        return {k: (f"{v} {uuid.uuid4().hex[:6]}" if k == "name" else v) for k, v in body.items()} if body else body

    for scope in ALL_SCOPES:
        _, raw = make_key([scope])
        response = getattr(key_client(raw), method)(path, unique(body), format="json")
        if allowed == "*" or scope == allowed:
            assert response.status_code < 400, (scope, path, response.status_code, response.content[:300])
        else:
            error = assert_envelope(response, 403, "insufficient_scope")
            assert (allowed or "cannot use") in error["message"] or allowed is None, error
    # a key with every scope still cannot use what keys may never use
    _, raw = make_key(ALL_SCOPES)
    response = getattr(key_client(raw), method)(path, unique(body), format="json")
    if allowed is None:
        assert_envelope(response, 403, "insufficient_scope")
    else:
        assert response.status_code < 400, (path, response.content[:300])


def test_service_account_cannot_sign_in(make_key: Any, anon_api: Any) -> None:
    from django.core import mail

    key, _ = make_key(["admin"])
    email = key.user.email
    assert_envelope(
        anon_api.post("/api/v1/auth/login", {"email": email, "password": "whatever-1234"}, format="json"),
        401,
        "authentication_failed",
    )
    # even with sign-up open and the code in hand, the address never becomes a session
    assert anon_api.post("/api/v1/auth/request-code", {"email": email}, format="json").status_code == 202
    codes = [re.search(r"\b(\d{6})\b", m.body).group(1) for m in mail.outbox if email in m.to]
    for code in codes:
        response = anon_api.post("/api/v1/auth/verify-code", {"email": email, "code": code}, format="json")
        assert response.status_code >= 400 and "access" not in response.json(), response.content


def test_admin_key_does_not_count_as_the_tenants_last_admin(admin_api: Any, admin_user: User, make_key: Any) -> None:
    make_key(["admin"])
    error = assert_envelope(admin_api.patch(f"/api/v1/users/{admin_user.pk}/", {"role": "member"}, format="json"), 409)
    assert error["type"] == "conflict"


def test_objects_created_by_a_key_are_owned_by_its_account(make_key: Any) -> None:
    key, raw = make_key(["documents:write", "documents:read"])
    response = key_client(raw).post("/api/v1/tasks/", {"title": "From a script"}, format="json")
    assert response.status_code == 201, response.content
    from tasks.models import Task

    assert Task.objects.get(pk=response.json()["id"]).owner_id == key.user_id


# --- rate limits and quotas ------------------------------------------------------------------


def test_rate_limit_counts_per_key(settings: Any, make_key: Any) -> None:
    settings.RATELIMIT_ENABLED = True
    _, slow = make_key(["documents:read"], rate_limit_per_minute=2)
    _, other = make_key(["documents:read"], rate_limit_per_minute=2)
    client = key_client(slow)
    assert [client.get("/api/v1/documents/").status_code for _ in range(2)] == [200, 200]
    response = client.get("/api/v1/documents/")
    assert_envelope(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert key_client(other).get("/api/v1/documents/").status_code == 200  # its own budget


def test_per_key_daily_quota(make_key: Any, tenant: Any, settings: Any, fake_openai: Any) -> None:
    settings.CHAT_PROVIDER, settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = (
        "openai",
        "sk-test",
        fake_openai.base_url,
    )
    from tenants.usage import quota_status, usage_record

    key, raw = make_key(["chat"], daily_token_quota=100)
    quotas = {q.scope: q for q in quota_status(tenant=tenant, user=key.user)}
    assert quotas["user"].limit == 100
    usage_record(tenant=tenant, user=key.user, kind="chat", model="m", prompt_tokens=90, completion_tokens=20)
    body = key_client(raw).get("/api/v1/usage/").json()
    assert body["quota"]["user"]["limit"] == 100 and body["quota"]["user"]["remaining"] == 0
    # and a question about its documents no longer fits
    from tests.chat.conftest import HANDBOOK, make_ready_document

    make_ready_document(tenant=tenant, owner=key.user, pages=HANDBOOK)
    session = key_client(raw).post("/api/v1/chat/sessions/", {"title": "q"}, format="json").json()
    response = key_client(raw).post(
        f"/api/v1/chat/sessions/{session['id']}/messages/", {"content": "How many vacation days?"}, format="json"
    )
    assert_envelope(response, 429, "quota_exceeded")
    assert response["Retry-After"]


def test_wrong_revoked_and_expired_keys_are_401_on_every_endpoint(make_key: Any, other_tenant: Any) -> None:
    from integrations.services import api_key_revoke

    revoked, revoked_raw = make_key(ALL_SCOPES)
    api_key_revoke(key=revoked)
    expired, expired_raw = make_key(ALL_SCOPES, expires_at=timezone.now() + timedelta(minutes=1))
    APIKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _, foreign_raw = make_key(ALL_SCOPES, tenant=other_tenant)
    wrong = "dmk_" + revoked.prefix + "_" + "B" * 43
    for method, path, body, _allowed in MATRIX:
        for raw, header in ((revoked_raw, None), (expired_raw, None), (wrong, None), (foreign_raw, "acme")):
            response = getattr(key_client(raw, header), method)(path, body, format="json")
            assert_envelope(response, 401, "authentication_failed")


class TestAPIKeysAreIsolated(IsolatedResourceTests):
    list_url = URL
    verbs = ("get", "delete")
    owner_role = "admin"
    max_list_queries = 8

    def make_object(self, owner: User) -> APIKey:
        from integrations.services import api_key_create

        key, _ = api_key_create(
            tenant=owner.tenant, created_by=owner, name=f"k-{uuid.uuid4().hex[:8]}", scopes=["search"]
        )
        return key

    def check_unchanged(self, obj: APIKey) -> None:
        obj.refresh_from_db()
        assert obj.revoked_at is None and obj.user.is_active
