"""/api/v1/users/: tenant admins list, invite, change roles and deactivate; others are refused."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts.models import User
from tests.accounts.conftest import login, request_code
from tests.conftest import make_client
from tests.crosstenant import IsolatedResourceTests, assert_envelope
from tests.factories import UserFactory

USERS = "/api/v1/users/"


def detail(user: User) -> str:
    return f"{USERS}{user.pk}/"


class TestUsersAreIsolated(IsolatedResourceTests):
    """Anonymous 401, a tenant admin's 200, another tenant's admin 404, a bounded list (the shared mixin)."""

    list_url = USERS
    owner_role = User.Role.ADMIN
    foreign_body = {"role": "viewer", "is_active": False}

    def make_object(self, owner: User) -> User:
        return UserFactory(tenant=owner.tenant, role=User.Role.MEMBER)

    def check_unchanged(self, obj: User) -> None:
        obj.refresh_from_db()
        assert obj.role == "member" and obj.is_active


def test_list_shows_the_tenants_users_only(admin_api, user, admin_user, viewer_user, other_user):
    User.objects.create_superuser("op@acme.test", "an-operator-password-1")
    body = admin_api.get(USERS).json()
    assert body["count"] == 3
    emails = [row["email"] for row in body["results"]]
    assert emails == sorted([user.email, admin_user.email, viewer_user.email])
    assert set(body["results"][0]) == {
        "id",
        "email",
        "full_name",
        "role",
        "is_active",
        "email_verified",
        "tenant",
        "last_login",
        "created_at",
        "updated_at",
    }


def test_list_filters_and_search(admin_api, user, admin_user, viewer_user):
    assert [r["email"] for r in admin_api.get(USERS, {"role": "viewer"}).json()["results"]] == [viewer_user.email]
    assert [r["email"] for r in admin_api.get(USERS, {"search": "member@"}).json()["results"]] == [user.email]
    user.is_active = False
    user.save()
    assert [r["email"] for r in admin_api.get(USERS, {"is_active": "false"}).json()["results"]] == [user.email]


@pytest.mark.parametrize("who", ["user", "viewer_user"])
def test_members_and_viewers_are_refused(request, who, admin_user):
    client = make_client(request.getfixturevalue(who))
    assert_envelope(client.get(USERS), 403, "permission_denied")
    assert_envelope(client.get(detail(admin_user)), 403, "permission_denied")
    assert_envelope(client.post(USERS, {"email": "x@acme.test"}, format="json"), 403, "permission_denied")
    assert_envelope(client.patch(detail(admin_user), {"role": "viewer"}, format="json"), 403, "permission_denied")
    assert_envelope(client.delete(detail(admin_user)), 403, "permission_denied")
    admin_user.refresh_from_db()
    assert admin_user.role == "admin" and admin_user.is_active


def test_invite_creates_a_code_only_user_and_emails_them(admin_api, closed_tenant, admin_user):
    response = admin_api.post(USERS, {"email": "New@Acme.test", "full_name": "Nora", "role": "viewer"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "new@acme.test" and body["role"] == "viewer" and body["email_verified"] is False
    invited = User.objects.get(pk=body["id"])
    assert invited.tenant == closed_tenant and not invited.has_usable_password()
    assert mail.outbox[-1].to == ["new@acme.test"] and "acme" in mail.outbox[-1].body
    # they can sign in with a code even though sign-up is closed: they have an account now
    anon = make_client(None, closed_tenant)
    code = request_code(anon, "new@acme.test")
    signed_in = anon.post("/api/v1/auth/verify-code", {"email": "new@acme.test", "code": code}, format="json").json()
    assert signed_in["user"]["id"] == str(invited.pk) and signed_in["created"] is False


def test_invite_defaults_to_member(admin_api):
    assert admin_api.post(USERS, {"email": "m@acme.test"}, format="json").json()["role"] == "member"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"email": "member@acme.test"}, 409, "conflict"),
        ({"email": "MEMBER@acme.test"}, 409, "conflict"),
        ({"email": "x@acme.test", "role": "owner"}, 400, "validation_error"),
        ({"email": "not-an-email"}, 400, "validation_error"),
        ({}, 400, "validation_error"),
    ],
)
def test_invite_bad_input(admin_api, user, payload, status, code):
    assert_envelope(admin_api.post(USERS, payload, format="json"), status, code)


def test_invite_an_address_used_in_another_tenant(admin_api, other_user):
    assert admin_api.post(USERS, {"email": other_user.email}, format="json").status_code == 201


def test_change_role(admin_api, user, anon_api):
    response = admin_api.patch(detail(user), {"role": "admin"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "admin"
    # the new role reaches the user's next tokens
    assert login(anon_api, user.email)["user"]["role"] == "admin"
    assert make_client(User.objects.get(pk=user.pk)).get(USERS).status_code == 200


def test_put_works_like_patch(admin_api, user):
    response = admin_api.put(detail(user), {"role": "viewer", "full_name": "V"}, format="json")
    assert response.status_code == 200 and response.json()["role"] == "viewer"


@pytest.mark.parametrize(
    "payload", [{"role": "boss"}, {"email": "new@acme.test"}, {"is_active": "perhaps"}, {"tenant": "globex"}]
)
def test_update_bad_input(admin_api, user, payload):
    assert_envelope(admin_api.patch(detail(user), payload, format="json"), 400, "validation_error")
    user.refresh_from_db()
    assert user.role == "member" and user.email == "member@acme.test"


def test_deactivate_ends_the_users_sessions(admin_api, user, anon_api):
    tokens = login(anon_api, user.email)
    client = make_client(user)
    assert admin_api.delete(detail(user)).status_code == 204
    user.refresh_from_db()
    assert not user.is_active  # kept, not deleted
    assert_envelope(client.get("/api/v1/auth/me"), 401, "authentication_failed")
    assert_envelope(
        anon_api.post("/api/v1/auth/refresh", {"refresh": tokens["refresh"]}, format="json"),
        401,
        "authentication_failed",
    )
    # and reactivate
    response = admin_api.patch(detail(user), {"is_active": True}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is True
    assert login(anon_api, user.email)


def test_last_admin_cannot_be_demoted_or_deactivated(admin_api, admin_user):
    for response in (
        admin_api.patch(detail(admin_user), {"role": "member"}, format="json"),
        admin_api.patch(detail(admin_user), {"is_active": False}, format="json"),
        admin_api.put(detail(admin_user), {"role": "viewer"}, format="json"),
        admin_api.delete(detail(admin_user)),
    ):
        error = assert_envelope(response, 409, "conflict")
        assert "last active admin" in error["message"]
    admin_user.refresh_from_db()
    assert admin_user.role == "admin" and admin_user.is_active
    # harmless changes to the last admin are fine
    assert admin_api.patch(detail(admin_user), {"full_name": "Ada", "role": "admin"}, format="json").status_code == 200


def test_an_inactive_admin_does_not_count(admin_api, admin_user, tenant):
    UserFactory(tenant=tenant, role=User.Role.ADMIN, is_active=False)
    assert_envelope(admin_api.patch(detail(admin_user), {"role": "member"}, format="json"), 409, "conflict")


def test_with_two_admins_one_can_step_down(admin_api, admin_user, tenant):
    second = UserFactory(tenant=tenant, email="second@acme.test", role=User.Role.ADMIN)
    assert admin_api.patch(detail(admin_user), {"role": "member"}, format="json").status_code == 200
    # a role change ends the sessions of whoever it changed: admin_user's old token is refused
    assert_envelope(admin_api.get(USERS), 401, "authentication_failed")
    admin_user.refresh_from_db()
    assert_envelope(make_client(admin_user).get(USERS), 403, "permission_denied")  # a new one is a member's
    second_api = make_client(second)
    assert_envelope(second_api.patch(detail(second), {"role": "viewer"}, format="json"), 409, "conflict")
    assert_envelope(second_api.delete(detail(second)), 409, "conflict")


def test_unknown_and_malformed_ids_are_404(admin_api):
    assert_envelope(admin_api.get(f"{USERS}00000000-0000-0000-0000-000000000000/"), 404, "not_found")
    assert_envelope(admin_api.get(f"{USERS}not-a-uuid/"), 404, "not_found")


def test_operators_are_not_reachable(admin_api):
    operator = User.objects.create_superuser("op@acme.test", "an-operator-password-1")
    assert_envelope(admin_api.get(detail(operator)), 404, "not_found")
    assert_envelope(admin_api.patch(detail(operator), {"is_active": False}, format="json"), 404, "not_found")
