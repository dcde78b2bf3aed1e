"""Password flows: register, login, me, password/change, password/reset(+confirm)."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts.models import User
from tests.accounts.conftest import PASSWORD, STRONG, bearer, last_code, login
from tests.conftest import make_client
from tests.crosstenant import assert_envelope
from tests.factories import UserFactory

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
CHANGE = "/api/v1/auth/password/change"
RESET = "/api/v1/auth/password/reset"
CONFIRM = "/api/v1/auth/password/reset/confirm"
REFRESH = "/api/v1/auth/refresh"


# --- register --------------------------------------------------------------------------------


def test_register_creates_a_member_who_then_signs_in(anon_api, tenant):
    response = anon_api.post(
        REGISTER, {"email": "New@Acme.test", "password": STRONG, "full_name": "Nia New"}, format="json"
    )
    # 202 and no tokens: the same answer as for a taken address (tests/security/test_enumeration.py)
    assert response.status_code == 202, response.content
    assert set(response.json()) == {"detail"}
    user = User.objects.get(tenant=tenant, email="new@acme.test")
    assert user.role == "member" and not user.email_verified
    assert user.check_password(STRONG) and user.full_name == "Nia New"
    body = login(anon_api, "new@acme.test", STRONG)
    assert body["user"]["id"] == str(user.pk)
    assert bearer(tenant, body["access"]).get(ME).json()["id"] == str(user.pk)


def test_registering_someone_elses_address_does_not_give_their_account_away(anon_api, tenant):
    """Pre-hijacking: anyone may register an address they do not own (nothing checks it then). When its
    owner later proves the mailbox with an e-mailed code, the account becomes theirs alone: the
    registrant's password and sessions stop working."""
    from tests.accounts.conftest import request_code

    assert anon_api.post(REGISTER, {"email": "victim@acme.test", "password": STRONG}, format="json").status_code == 202
    squatter = login(anon_api, "victim@acme.test", STRONG)
    assert squatter["user"]["email_verified"] is False

    owner = anon_api.post(
        "/api/v1/auth/verify-code",
        {"email": "victim@acme.test", "code": request_code(anon_api, "victim@acme.test")},
        format="json",
    )
    assert owner.status_code == 200, owner.content
    assert owner.json()["user"]["id"] == squatter["user"]["id"] and owner.json()["user"]["email_verified"]

    response = anon_api.post(LOGIN, {"email": "victim@acme.test", "password": STRONG}, format="json")
    assert_envelope(response, 401, "authentication_failed")
    response = anon_api.post(REFRESH, {"refresh": squatter["refresh"]}, format="json")
    assert_envelope(response, 401, "authentication_failed")
    assert bearer(tenant, owner.json()["access"]).get(ME).status_code == 200
    # a verified account keeps its password through later code sign-ins
    reset = anon_api.post(
        "/api/v1/auth/password/reset/confirm",
        {"email": "victim@acme.test", "code": _reset_code(anon_api, "victim@acme.test"), "new_password": STRONG},
        format="json",
    )
    assert reset.status_code == 200, reset.content
    again = anon_api.post(
        "/api/v1/auth/verify-code",
        {"email": "victim@acme.test", "code": request_code(anon_api, "victim@acme.test")},
        format="json",
    )
    assert again.status_code == 200, again.content
    assert again.json()["user"]["id"] == owner.json()["user"]["id"]
    assert login(anon_api, "victim@acme.test", STRONG)


def _reset_code(client, email: str) -> str:  # type: ignore[no-untyped-def]
    assert client.post(RESET, {"email": email}, format="json").status_code == 202
    return last_code(email)


@pytest.mark.parametrize("email", ["member@acme.test", "MEMBER@acme.test", " member@acme.test "])
def test_duplicate_registration_changes_nothing(anon_api, user, email):
    # The same 202 as a new address (no enumeration); the account's owner is told by e-mail.
    response = anon_api.post(REGISTER, {"email": email, "password": STRONG}, format="json")
    assert response.status_code == 202
    assert User.objects.filter(tenant=user.tenant, email="member@acme.test").count() == 1
    user.refresh_from_db()
    assert not user.check_password(STRONG)


def test_same_email_in_another_tenant_is_another_user(other_user, tenant):
    response = make_client(None, tenant).post(REGISTER, {"email": other_user.email, "password": STRONG}, format="json")
    assert response.status_code == 202
    assert User.objects.filter(email=other_user.email).count() == 2
    # each signs in to their own tenant only, with their own password
    assert_envelope(
        make_client(None, other_user.tenant).post(
            LOGIN, {"email": other_user.email, "password": STRONG}, format="json"
        ),
        401,
        "authentication_failed",
    )


@pytest.mark.parametrize(
    "password",
    [
        "short1",  # too short
        "password",  # too common
        "12345678901",  # entirely numeric
        "newbie@acme.test",  # too similar to the e-mail
    ],
)
def test_weak_passwords_are_refused(anon_api, password):
    response = anon_api.post(REGISTER, {"email": "newbie@acme.test", "password": password}, format="json")
    error = assert_envelope(response, 400, "validation_error")
    assert error["details"]["fields"]["password"]
    assert not User.objects.filter(email="newbie@acme.test").exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"password": STRONG}, "email"),
        ({"email": "bad", "password": STRONG}, "email"),
        ({"email": "a@acme.test"}, "password"),
        ({"email": "a@acme.test", "password": "x" * 129}, "password"),
    ],
)
def test_register_bad_input(anon_api, payload, field):
    error = assert_envelope(anon_api.post(REGISTER, payload, format="json"), 400, "validation_error")
    assert field in error["details"]["fields"]


def test_register_is_refused_where_signup_is_closed(anon_api, closed_tenant):
    response = anon_api.post(REGISTER, {"email": "new@acme.test", "password": STRONG}, format="json")
    assert_envelope(response, 403, "permission_denied")
    assert not User.objects.filter(email="new@acme.test").exists()


def test_new_tenants_have_signup_closed_by_default(db):
    from tests.factories import TenantFactory

    closed = TenantFactory(slug="closed", settings={})
    response = make_client(None, closed).post(REGISTER, {"email": "new@closed.test", "password": STRONG}, format="json")
    assert_envelope(response, 403, "permission_denied")


# --- login -----------------------------------------------------------------------------------


def test_login_returns_tokens_and_the_user(anon_api, user):
    body = login(anon_api, user.email)
    assert body["user"]["id"] == str(user.pk)
    user.refresh_from_db()
    assert user.last_login is not None
    assert bearer(user.tenant, body["access"]).get(ME).status_code == 200


def test_login_errors_are_identical(anon_api, user, other_user):
    inactive = UserFactory(tenant=user.tenant, email="gone@acme.test", is_active=False)
    UserFactory(tenant=None, email="operator@acme.test", is_staff=True)
    attempts = [
        {"email": user.email, "password": "wrong-password-123"},
        {"email": "nobody@acme.test", "password": PASSWORD},
        {"email": inactive.email, "password": PASSWORD},
        {"email": other_user.email, "password": PASSWORD},  # exists, but in another tenant
        {"email": "operator@acme.test", "password": PASSWORD},  # operators use the admin only
        {"email": user.email, "password": ""},
    ]
    errors = []
    for payload in attempts:
        response = anon_api.post(LOGIN, payload, format="json")
        if payload["password"] == "":
            assert_envelope(response, 400, "validation_error")
            continue
        error = assert_envelope(response, 401, "authentication_failed")
        assert response["WWW-Authenticate"].startswith("Bearer")
        errors.append((error["message"], error["details"]))
    assert len(errors) == 5
    assert all(error == ("Invalid email or password.", {}) for error in errors), errors


def test_login_is_per_tenant(other_tenant, user):
    response = make_client(None, other_tenant).post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json")
    assert_envelope(response, 401, "authentication_failed")


# --- me --------------------------------------------------------------------------------------


def test_me_get_and_patch(api, user):
    body = api.get(ME).json()
    assert body["email"] == user.email and body["role"] == "member"
    response = api.patch(ME, {"full_name": "  Mia Member "}, format="json")
    assert response.status_code == 200 and response.json()["full_name"] == "Mia Member"
    user.refresh_from_db()
    assert user.full_name == "Mia Member"


@pytest.mark.parametrize(
    "payload", [{"role": "admin"}, {"email": "x@acme.test"}, {"is_active": False}, {"full_name": "x" * 201}]
)
def test_me_patch_cannot_change_anything_else(api, user, payload):
    assert_envelope(api.patch(ME, payload, format="json"), 400, "validation_error")
    user.refresh_from_db()
    assert user.role == "member" and user.email == "member@acme.test" and user.is_active


def test_me_needs_a_token(anon_api):
    assert_envelope(anon_api.get(ME), 401, "not_authenticated")
    assert_envelope(anon_api.patch(ME, {"full_name": "x"}, format="json"), 401, "not_authenticated")


# --- password change -------------------------------------------------------------------------


def test_password_change_ends_other_sessions(anon_api, user):
    session_a = login(anon_api, user.email)
    session_b = login(anon_api, user.email)
    client = bearer(user.tenant, session_a["access"])
    response = client.post(CHANGE, {"old_password": PASSWORD, "new_password": STRONG}, format="json")
    assert response.status_code == 200, response.content
    fresh = response.json()
    assert set(fresh) == {"access", "refresh"}
    # both older refresh tokens are dead, the fresh pair works
    for old in (session_a["refresh"], session_b["refresh"]):
        assert_envelope(anon_api.post(REFRESH, {"refresh": old}, format="json"), 401, "authentication_failed")
    assert anon_api.post(REFRESH, {"refresh": fresh["refresh"]}, format="json").status_code == 200
    # the old password no longer works, the new one does
    assert_envelope(
        anon_api.post(LOGIN, {"email": user.email, "password": PASSWORD}, format="json"), 401, "authentication_failed"
    )
    assert login(anon_api, user.email, STRONG)


def test_password_change_needs_the_old_password(api, user):
    error = assert_envelope(
        api.post(CHANGE, {"old_password": "nope-nope-nope", "new_password": STRONG}, format="json"),
        400,
        "validation_error",
    )
    assert "old_password" in error["details"]["fields"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("new_password", ["short1", "password123", "99999999999"])
def test_password_change_refuses_weak_passwords(api, user, new_password):
    error = assert_envelope(
        api.post(CHANGE, {"old_password": PASSWORD, "new_password": new_password}, format="json"),
        400,
        "validation_error",
    )
    assert "new_password" in error["details"]["fields"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_password_change_needs_a_token(anon_api):
    assert_envelope(
        anon_api.post(CHANGE, {"old_password": PASSWORD, "new_password": STRONG}, format="json"),
        401,
        "not_authenticated",
    )


# --- password reset --------------------------------------------------------------------------


def test_password_reset_flow(anon_api, user):
    session = login(anon_api, user.email)
    response = anon_api.post(RESET, {"email": user.email}, format="json")
    assert response.status_code == 202
    assert "password reset" in mail.outbox[-1].subject
    code = last_code(user.email)
    response = anon_api.post(CONFIRM, {"email": user.email, "code": code, "new_password": STRONG}, format="json")
    assert response.status_code == 200, response.content
    assert login(anon_api, user.email, STRONG)
    # every earlier session ended, and the code is used up
    assert_envelope(
        anon_api.post(REFRESH, {"refresh": session["refresh"]}, format="json"), 401, "authentication_failed"
    )
    response = anon_api.post(CONFIRM, {"email": user.email, "code": code, "new_password": STRONG + "x"}, format="json")
    assert_envelope(response, 400, "validation_error")


def test_password_reset_sets_a_first_password_for_code_only_accounts(anon_api, tenant):
    invited = User.objects.create_user("invited@acme.test", tenant=tenant)
    assert not invited.has_usable_password()
    anon_api.post(RESET, {"email": invited.email}, format="json")
    anon_api.post(
        CONFIRM, {"email": invited.email, "code": last_code(invited.email), "new_password": STRONG}, format="json"
    )
    invited.refresh_from_db()
    assert invited.check_password(STRONG) and invited.email_verified


def test_password_reset_answers_the_same_for_unknown_addresses(anon_api, user):
    known = anon_api.post(RESET, {"email": user.email}, format="json")
    unknown = anon_api.post(RESET, {"email": "nobody@acme.test"}, format="json")
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert [m.to for m in mail.outbox] == [[user.email]]


def test_password_reset_weak_password_keeps_the_code(anon_api, user):
    anon_api.post(RESET, {"email": user.email}, format="json")
    code = last_code(user.email)
    error = assert_envelope(
        anon_api.post(CONFIRM, {"email": user.email, "code": code, "new_password": "password"}, format="json"),
        400,
        "validation_error",
    )
    assert "new_password" in error["details"]["fields"]
    response = anon_api.post(CONFIRM, {"email": user.email, "code": code, "new_password": STRONG}, format="json")
    assert response.status_code == 200


def test_password_reset_wrong_code_changes_nothing(anon_api, user):
    anon_api.post(RESET, {"email": user.email}, format="json")
    code = last_code(user.email)
    bad = f"{(int(code) + 1) % 1_000_000:06d}"
    assert_envelope(
        anon_api.post(CONFIRM, {"email": user.email, "code": bad, "new_password": STRONG}, format="json"),
        400,
        "validation_error",
    )
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_password_reset_for_unknown_address_fails_like_a_wrong_code(anon_api):
    response = anon_api.post(
        CONFIRM, {"email": "nobody@acme.test", "code": "123456", "new_password": STRONG}, format="json"
    )
    error = assert_envelope(response, 400, "validation_error")
    assert error["message"] == "The code is invalid or has expired."


def test_reset_code_does_not_sign_in(anon_api, user):
    anon_api.post(RESET, {"email": user.email}, format="json")
    response = anon_api.post(
        "/api/v1/auth/verify-code", {"email": user.email, "code": last_code(user.email)}, format="json"
    )
    assert_envelope(response, 400, "validation_error")


def test_inactive_user_gets_no_reset_code(anon_api, user):
    user.is_active = False
    user.save()
    assert anon_api.post(RESET, {"email": user.email}, format="json").status_code == 202
    assert mail.outbox == []
