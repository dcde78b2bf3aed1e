"""The operators' admin for users keeps the API's rules: a tenant keeps an active admin; a user's tenant is fixed."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

from accounts.authentication import tokens_for_user
from accounts.models import User
from tenants.models import Tenant
from tests.factories import UserFactory

CHANGELIST = "/admin/accounts/user/"


def change_url(user: User) -> str:
    return f"/admin/accounts/user/{user.pk}/change/"


@pytest.fixture
def operator(db: Any) -> User:
    return User.objects.create_superuser("ops@documind.test", "an-operator-password-42")


@pytest.fixture
def admin_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def deactivate(client: Client, *users: User) -> list[tuple[str, str]]:
    """Run the deactivate action; the (level, text) of the messages it left."""
    response = client.post(CHANGELIST, {"action": "deactivate", "_selected_action": [u.pk for u in users]}, follow=True)
    assert response.redirect_chain == [(CHANGELIST, 302)]  # the changelist shows (and uses up) the messages
    return [(m.level_tag, m.message) for m in response.context["messages"]]


def form_data(user: User, **changes: Any) -> dict[str, Any]:
    """What the change form posts for ``user`` as stored, with ``changes`` (booleans as checkboxes)."""
    values = {
        "email": user.email,
        "role": user.role,
        "full_name": user.full_name,
        "is_active": user.is_active,
        "email_verified": user.email_verified,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        **changes,
    }
    return {k: ("on" if v is True else v) for k, v in values.items() if v is not False}


def active_admins(tenant: Tenant) -> list[str]:
    return sorted(User.objects.filter(tenant=tenant, role="admin", is_active=True).values_list("email", flat=True))


def test_deactivate_action_spares_the_last_admin(admin_client, tenant, admin_user, user, other_tenant):
    UserFactory(tenant=other_tenant, email="admin@globex.test", role=User.Role.ADMIN)  # another tenant's admin
    tokens_for_user(admin_user)
    levels = dict(deactivate(admin_client, admin_user, user))
    user.refresh_from_db()
    admin_user.refresh_from_db()
    assert not user.is_active and admin_user.is_active
    assert levels["success"] == "Deactivated 1 user(s)."
    assert "last active admin" in levels["error"] and f"{admin_user.email} (acme)" in levels["error"]
    assert user.email not in levels["error"]
    assert not BlacklistedToken.objects.filter(token__user=admin_user).exists()  # their sessions go on


def test_deactivate_action_refusing_everything_says_only_that(admin_client, admin_user):
    messages = deactivate(admin_client, admin_user)
    assert [level for level, _ in messages] == ["error"]
    admin_user.refresh_from_db()
    assert admin_user.is_active


def test_of_two_admins_selected_together_one_stays(admin_client, tenant, admin_user):
    second = UserFactory(tenant=tenant, email="second-admin@acme.test", role=User.Role.ADMIN)
    tokens_for_user(second)
    tokens_for_user(admin_user)
    levels = dict(deactivate(admin_client, admin_user, second))
    assert levels["success"] == "Deactivated 1 user(s)." and "last active admin" in levels["error"]
    assert len(active_admins(tenant)) == 1
    gone = User.objects.get(tenant=tenant, role="admin", is_active=False)
    assert BlacklistedToken.objects.filter(token__user=gone).count() == 1  # the deactivated one's sessions end


def test_deactivate_action_with_another_active_admin(admin_client, tenant, admin_user, operator):
    UserFactory(tenant=tenant, email="second-admin@acme.test", role=User.Role.ADMIN)
    inactive_admin = UserFactory(tenant=tenant, email="old-admin@acme.test", role=User.Role.ADMIN, is_active=False)
    assert deactivate(admin_client, admin_user) == [("success", "Deactivated 1 user(s).")]
    assert active_admins(tenant) == ["second-admin@acme.test"]
    # an inactive admin does not count, and is not "deactivated" again
    assert deactivate(admin_client, inactive_admin) == [("success", "Deactivated 0 user(s).")]


def test_deactivate_action_on_an_operator(admin_client, db):
    other_operator = User.objects.create_superuser("ops2@documind.test", "another-operator-password-7")
    assert deactivate(admin_client, other_operator) == [("success", "Deactivated 1 user(s).")]
    other_operator.refresh_from_db()
    assert not other_operator.is_active


@pytest.mark.parametrize(
    "changes", [{"role": "member"}, {"role": "viewer"}, {"is_active": False}, {"role": "member", "is_active": False}]
)
def test_change_form_refuses_to_remove_the_last_admin(admin_client, tenant, admin_user, changes):
    response = admin_client.post(change_url(admin_user), form_data(admin_user, **changes))
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert errors == ["This is the tenant's last active admin: make someone else an admin first."]
    assert b"last active admin" in response.content
    admin_user.refresh_from_db()
    assert admin_user.role == "admin" and admin_user.is_active


def test_change_form_demotes_or_deactivates_an_admin_when_another_remains(admin_client, tenant, admin_user):
    second = UserFactory(tenant=tenant, email="second-admin@acme.test", role=User.Role.ADMIN)
    tokens_for_user(second)
    response = admin_client.post(change_url(second), form_data(second, role="member", full_name="Sec"))
    assert response.status_code == 302
    second.refresh_from_db()
    assert second.role == "member" and second.full_name == "Sec"
    assert BlacklistedToken.objects.filter(token__user=second).count() == 1  # a new role ends their sessions
    # now admin_user is the last one again
    assert admin_client.post(change_url(admin_user), form_data(admin_user, is_active=False)).status_code == 200
    assert admin_client.post(change_url(second), form_data(second, role="admin")).status_code == 302
    assert admin_client.post(change_url(admin_user), form_data(admin_user, is_active=False)).status_code == 302
    assert active_admins(tenant) == ["second-admin@acme.test"]


def test_change_form_deactivation_ends_sessions(admin_client, user):
    tokens_for_user(user)
    assert admin_client.post(change_url(user), form_data(user, is_active=False)).status_code == 302
    user.refresh_from_db()
    assert not user.is_active
    assert BlacklistedToken.objects.filter(token__user=user).count() == 1
    # other edits of an inactive user revoke nothing more
    tokens_for_user(user)
    assert admin_client.post(change_url(user), form_data(user, full_name="Still Off")).status_code == 302
    assert BlacklistedToken.objects.filter(token__user=user).count() == 1


def test_other_changes_to_the_last_admin_are_fine(admin_client, admin_user):
    response = admin_client.post(change_url(admin_user), form_data(admin_user, full_name="The Boss"))
    assert response.status_code == 302
    admin_user.refresh_from_db()
    assert admin_user.full_name == "The Boss" and admin_user.role == "admin"


def test_tenant_is_read_only_once_the_user_exists(admin_client, tenant, other_tenant, user, admin_user):
    page = admin_client.get(change_url(user))
    assert page.status_code == 200
    assert b'name="tenant"' not in page.content and b"acme" in page.content.lower()
    # a posted tenant is ignored
    response = admin_client.post(change_url(user), form_data(user, tenant=str(other_tenant.pk), full_name="M"))
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.tenant == tenant and user.full_name == "M"
    # so the last admin cannot be moved away either
    admin_client.post(change_url(admin_user), form_data(admin_user, tenant=str(other_tenant.pk)))
    admin_user.refresh_from_db()
    assert admin_user.tenant == tenant and active_admins(tenant) == [admin_user.email]


def test_add_form_still_takes_a_tenant(admin_client, tenant):
    page = admin_client.get("/admin/accounts/user/add/")
    assert page.status_code == 200 and b'name="tenant"' in page.content
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "First-Admin@Acme.test",
            "tenant": str(tenant.pk),
            "role": "admin",
            "full_name": "",
            "usable_password": "false",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    added = User.objects.get(email="first-admin@acme.test")
    assert added.tenant == tenant and added.role == "admin" and not added.has_usable_password()


def test_tenant_users_still_cannot_be_made_staff(admin_client, admin_user):
    for flag in ("is_staff", "is_superuser"):
        response = admin_client.post(change_url(admin_user), form_data(admin_user, **{flag: True}))
        assert response.status_code == 200 and b"operators are users without a tenant" in response.content
    admin_user.refresh_from_db()
    assert not admin_user.is_staff and not admin_user.is_superuser


def test_operators_can_still_be_edited(admin_client, db):
    other_operator = User.objects.create_superuser("ops2@documind.test", "another-operator-password-7")
    response = admin_client.post(change_url(other_operator), form_data(other_operator, full_name="Night Shift"))
    assert response.status_code == 302
    other_operator.refresh_from_db()
    assert other_operator.full_name == "Night Shift" and other_operator.is_staff and other_operator.tenant is None
