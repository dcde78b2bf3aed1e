"""The audit log: what is recorded (who, what, object, IP, request id), never secrets, the admins'
read-only API, the operators' read-only admin, and append-only enforced by PostgreSQL itself (UPDATE,
DELETE and TRUNCATE refused; the test suite's own flush excepted, see tests/db_backend)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.management.color import no_style
from django.db import DatabaseError, connection, transaction
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEvent
from audit.services import audit_purge, audit_record
from tests.api_keys import key_client
from tests.crosstenant import IsolatedResourceTests, assert_envelope
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit/"
PASSWORD = "correct-horse-battery-1"


def rows(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def all_rows_text() -> str:
    return json.dumps(
        [{f.name: str(getattr(e, f.name)) for f in AuditEvent._meta.fields} for e in AuditEvent.objects.all()]
    )


def test_sign_in_and_failure_are_recorded_with_ip_and_request_id(anon_api: Any, user: User, tenant: Any) -> None:
    response = anon_api.post(
        "/api/v1/auth/login",
        {"email": user.email, "password": PASSWORD},
        format="json",
        HTTP_X_REQUEST_ID="req-login-1",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 200
    (ok,) = rows("auth.login")
    assert (ok.actor_type, ok.actor_id, ok.actor_label) == ("user", str(user.pk), user.email)
    assert ok.tenant_id == tenant.pk and ok.ip == "203.0.113.9" and ok.request_id == "req-login-1"
    assert ok.details == {"method": "password"}

    anon_api.post("/api/v1/auth/login", {"email": user.email, "password": "wrong-password-9"}, format="json")
    (failed,) = rows("auth.login_failed")
    assert failed.actor_type == "anonymous" and failed.actor_label == user.email
    assert failed.details == {"method": "password", "reason": "authentication_failed"}
    assert "wrong-password-9" not in all_rows_text() and PASSWORD not in all_rows_text()


def test_code_requests_and_code_sign_ins_never_store_the_code(anon_api: Any, user: User) -> None:
    anon_api.post("/api/v1/auth/request-code", {"email": user.email}, format="json")
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    anon_api.post("/api/v1/auth/verify-code", {"email": user.email, "code": "000000"}, format="json")
    assert (
        anon_api.post("/api/v1/auth/verify-code", {"email": user.email, "code": code}, format="json").status_code == 200
    )
    assert [r.details for r in rows("auth.code_requested")] == [{"purpose": "sign_in"}]
    assert rows("auth.login_failed")[0].details["method"] == "code"
    assert rows("auth.login")[0].actor_id == str(user.pk)
    assert code not in all_rows_text()


def test_password_change_and_reset(api: Any, anon_api: Any, user: User) -> None:
    api.post(
        "/api/v1/auth/password/change",
        {"old_password": "nope-nope-1", "new_password": "N3w-pass-phrase"},
        format="json",
    )
    api.post(
        "/api/v1/auth/password/change", {"old_password": PASSWORD, "new_password": "N3w-pass-phrase"}, format="json"
    )
    assert rows("auth.password_change_failed")[0].actor_id == str(user.pk)
    changed = rows("auth.password_changed")[0]
    assert changed.actor_id == str(user.pk) and changed.object_id == str(user.pk)
    anon_api.post("/api/v1/auth/password/reset", {"email": user.email}, format="json")
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    anon_api.post(
        "/api/v1/auth/password/reset/confirm",
        {"email": user.email, "code": code, "new_password": "An0ther-pass-phrase"},
        format="json",
    )
    assert rows("auth.password_reset")[0].actor_id == str(user.pk)
    assert [r.details for r in rows("auth.code_requested")] == [{"purpose": "password_reset"}]
    text = all_rows_text()
    assert "N3w-pass-phrase" not in text and "An0ther-pass-phrase" not in text and code not in text


def test_admin_actions_on_people_keys_and_settings(admin_api: Any, admin_user: User, user: User) -> None:
    admin_api.post("/api/v1/users/", {"email": "new@acme.test", "role": "viewer"}, format="json")
    admin_api.patch(f"/api/v1/users/{user.pk}/", {"role": "admin"}, format="json")
    admin_api.delete(f"/api/v1/users/{user.pk}/")
    admin_api.patch("/api/v1/tenant/", {"settings": {"system_prompt": "Be brief."}}, format="json")
    created = admin_api.post("/api/v1/api-keys/", {"name": "bot", "scopes": ["search"]}, format="json").json()
    admin_api.delete(f"/api/v1/api-keys/{created['id']}/")

    assert rows("user.invited")[0].object_label == "new@acme.test"
    assert rows("user.role_changed")[0].details == {"from": "member", "to": "admin"}
    assert rows("user.deactivated")[0].object_id == str(user.pk)
    assert rows("tenant.settings_changed")[0].details == {"settings_changed": ["system_prompt"]}
    key_created = rows("api_key.created")[0]
    assert key_created.object_label == "bot" and key_created.details["scopes"] == ["search"]
    assert created["key"] not in all_rows_text()  # the secret never
    assert rows("api_key.revoked")[0].object_id == created["id"]
    for event in AuditEvent.objects.exclude(action__startswith="auth."):
        assert (event.actor_type, event.actor_id) == ("user", str(admin_user.pk)), event


def test_key_actions_name_the_key_and_deleted_actors_keep_their_name(
    make_key: Any, admin_api: Any, tenant: Any
) -> None:
    from tests.chat.conftest import HANDBOOK, make_ready_document

    key, raw = make_key(["documents:write", "documents:read"])
    document = make_ready_document(tenant=tenant, owner=key.user, pages=HANDBOOK)
    assert key_client(raw).delete(f"/api/v1/documents/{document.pk}/").status_code == 204
    (deleted,) = rows("document.deleted")
    assert (deleted.actor_type, deleted.actor_id) == ("api_key", str(key.pk))
    assert deleted.actor_label == f"{key.name} ({key.prefix})" and deleted.object_label == "Handbook"

    person = UserFactory(tenant=tenant, email="leaver@acme.test")
    audit_record(action="test.something", actor=person, tenant=tenant)
    person.delete()
    assert rows("test.something")[0].actor_label == "leaver@acme.test"


# --- reading it ----------------------------------------------------------------------------


def test_admins_read_their_tenants_log_with_filters_and_pagination(
    admin_api: Any, api: Any, tenant: Any, other_tenant: Any, client_for: Any
) -> None:
    for i in range(25):
        audit_record(action="test.bulk" if i % 2 else "test.other", tenant=tenant)
    foreign = audit_record(action="test.bulk", tenant=other_tenant)
    page = admin_api.get(URL).json()
    assert page["count"] == 25 and len(page["results"]) == 20
    assert page["results"][0]["id"] > page["results"][-1]["id"]  # newest first
    filtered = admin_api.get(URL, {"action": "test.bulk"}).json()
    assert filtered["count"] == 12 and {r["action"] for r in filtered["results"]} == {"test.bulk"}
    assert admin_api.get(URL, {"action_prefix": "test."}).json()["count"] == 25
    assert admin_api.get(URL, {"since": (timezone.now() + timedelta(hours=1)).isoformat()}).json()["count"] == 0
    assert foreign.pk not in {r["id"] for r in admin_api.get(URL, {"page_size": 100}).json()["results"]}
    assert_envelope(admin_api.get(f"{URL}{foreign.pk}/"), 404, "not_found")
    assert_envelope(api.get(URL), 403, "permission_denied")


def test_the_api_cannot_change_or_delete_rows(admin_api: Any, tenant: Any) -> None:
    event = audit_record(action="test.fixed", tenant=tenant)
    for verb in ("put", "patch", "delete"):
        assert_envelope(getattr(admin_api, verb)(f"{URL}{event.pk}/", {"action": "x"}, format="json"), 405)
    assert_envelope(admin_api.post(URL, {"action": "x"}, format="json"), 405)
    event.refresh_from_db()
    assert event.action == "test.fixed"


def test_the_database_refuses_update_and_delete(tenant: Any) -> None:
    event = audit_record(action="test.fixed", tenant=tenant)
    attempts = [
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="forged"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
        lambda: connection.cursor().execute("UPDATE audit_auditevent SET actor_label = 'x' WHERE id = %s", [event.pk]),
        lambda: connection.cursor().execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk]),
    ]
    for attempt in attempts:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
    event.refresh_from_db()
    assert event.action == "test.fixed"


def test_the_database_refuses_truncate(tenant: Any) -> None:
    event = audit_record(action="test.fixed", tenant=tenant)
    for statement in [
        "TRUNCATE audit_auditevent",
        "TRUNCATE tenants_tenant, audit_auditevent CASCADE",
        "TRUNCATE audit_auditevent RESTART IDENTITY",
    ]:
        with pytest.raises(DatabaseError, match="append-only: TRUNCATE"), transaction.atomic():
            connection.cursor().execute(statement)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_production_flush_is_refused(tenant: Any) -> None:
    """``manage.py flush`` outside the tests: the plain PostgreSQL backend's TRUNCATE meets the trigger."""
    event = audit_record(action="test.fixed", tenant=tenant)
    statements = PostgresOperations(connection).sql_flush(no_style(), ["audit_auditevent"])
    with pytest.raises(DatabaseError, match="append-only: TRUNCATE"), transaction.atomic():
        connection.ops.execute_sql_flush(statements)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_test_suites_flush_empties_the_log_and_leaves_the_trigger_on(tenant: Any) -> None:
    audit_record(action="test.flushed", tenant=tenant)
    connection.ops.execute_sql_flush(connection.ops.sql_flush(no_style(), ["audit_auditevent"]))
    assert not AuditEvent.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_auditevent_no_truncate'")
        assert cursor.fetchall() == [("O",)]  # O: enabled (D would be disabled)
    audit_record(action="test.after", tenant=tenant)
    with pytest.raises(DatabaseError, match="append-only: TRUNCATE"), transaction.atomic():
        connection.cursor().execute("TRUNCATE audit_auditevent")


def test_a_forged_purge_cut_off_does_not_reach_recent_rows(tenant: Any) -> None:
    event = audit_record(action="test.recent", tenant=tenant)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('documind.audit_purge_before', '2000-01-01', true)")
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_retention_purges_only_old_rows(tenant: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (created_at, tenant_id, actor_type, actor_id, actor_label, action,"
            " object_type, object_id, object_label, request_id, details)"
            " VALUES (now() - interval '400 days', %s, 'system', '', '', 'test.old', '', '', '', '', '{}')",
            [tenant.pk],
        )
    recent = audit_record(action="test.recent", tenant=tenant)
    assert audit_purge(older_than_days=365) == 1
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["test.recent"]
    assert audit_purge(older_than_days=0) == 0
    assert AuditEvent.objects.filter(pk=recent.pk).exists()


def test_secrets_are_scrubbed_from_details(tenant: Any) -> None:
    event = audit_record(
        action="test.scrub",
        tenant=tenant,
        details={"password": "p", "nested": {"api_secret": "s", "code": "123456", "ok": 1}, "prefix": "abc"},
    )
    assert event.details == {"nested": {"ok": 1}, "prefix": "abc"}


# --- operators ------------------------------------------------------------------------------


@pytest.fixture
def operator_client(client: Any) -> Any:
    operator = User.objects.create_superuser("ops@documind.test", "0perator-pass!")
    client.force_login(operator)
    client.operator = operator
    return client


def test_operators_read_but_cannot_alter_rows_in_the_admin(operator_client: Any, tenant: Any) -> None:
    event = audit_record(action="test.visible", tenant=tenant)
    assert operator_client.get("/admin/audit/auditevent/").status_code == 200
    assert operator_client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200
    assert operator_client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
    assert operator_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert operator_client.get("/admin/audit/auditevent/add/").status_code == 403
    event.refresh_from_db()
    assert event.action == "test.visible"


def test_operator_admin_actions_are_recorded(operator_client: Any, tenant: Any) -> None:
    response = operator_client.post(
        "/admin/tenants/tenant/", {"action": "deactivate", "_selected_action": [str(tenant.pk)]}
    )
    assert response.status_code == 302, response.content[:300]
    (event,) = rows("admin.action")
    assert event.actor_type == "operator" and event.actor_label == "ops@documind.test"
    assert event.details["admin_action"] == "deactivate" and event.details["selected"] == [str(tenant.pk)]


def test_operator_admin_sign_in_and_failure(client: Any) -> None:
    User.objects.create_superuser("ops@documind.test", "0perator-pass!")
    client.post("/admin/login/", {"username": "ops@documind.test", "password": "wrong"})
    client.post("/admin/login/", {"username": "ops@documind.test", "password": "0perator-pass!"})
    assert rows("admin.login_failed")[0].actor_label == "ops@documind.test"
    assert rows("admin.login")[0].actor_type == "operator"
    assert "0perator-pass!" not in all_rows_text() and "wrong" not in all_rows_text()


class TestAuditLogIsIsolated(IsolatedResourceTests):
    list_url = URL
    verbs = ("get",)  # the rest is a 405 for everyone (test_the_api_cannot_change_or_delete_rows)
    owner_role = "admin"
    max_list_queries = 6

    def make_object(self, owner: User) -> AuditEvent:
        event = audit_record(action="test.one", tenant=owner.tenant)
        assert event is not None
        return event
