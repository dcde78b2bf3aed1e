"""The operators' Django admin: tenants, users, the usage ledger; operators made by createsuperuser."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from accounts.models import User
from tenants.models import Tenant, UsageRecord
from tests.accounts.conftest import PASSWORD
from tests.factories import UserFactory

OPERATOR_PASSWORD = "an-operator-password-42"


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_superuser("ops@documind.test", OPERATOR_PASSWORD)


@pytest.fixture
def admin_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def test_createsuperuser_makes_a_tenantless_operator(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", OPERATOR_PASSWORD)
    call_command("createsuperuser", "--noinput", "--email", "Root@DocuMind.test", stdout=StringIO())
    operator = User.objects.get(email="root@documind.test")
    assert operator.tenant is None and operator.is_staff and operator.is_superuser and operator.is_active
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "root@documind.test", "password": OPERATOR_PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_tenant_users_cannot_sign_in_to_the_admin(admin_user):
    # even a tenant admin with the right password, even if someone made them staff
    User.objects.filter(pk=admin_user.pk).update(is_staff=True)
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": admin_user.email, "password": PASSWORD})
    assert response.status_code == 200 and b"Please enter the correct" in response.content
    assert client.get("/admin/").status_code == 302


def test_operators_cannot_use_the_api(operator, tenant):
    from tests.conftest import make_client

    response = make_client(None, tenant).post(
        "/api/v1/auth/login", {"email": operator.email, "password": OPERATOR_PASSWORD}, format="json"
    )
    assert response.status_code == 401


def test_tenant_changelist_search_and_filters(admin_client, tenant, other_tenant, user):
    other_tenant.is_active = False
    other_tenant.save()
    page = admin_client.get("/admin/tenants/tenant/")
    assert page.status_code == 200 and b"acme" in page.content and b"globex" in page.content
    searched = admin_client.get("/admin/tenants/tenant/", {"q": "glob"})
    assert b"globex" in searched.content and b">acme<" not in searched.content
    filtered = admin_client.get("/admin/tenants/tenant/", {"is_active__exact": "0"})
    assert filtered.context["cl"].result_count == 1
    by_id = admin_client.get("/admin/tenants/tenant/", {"q": str(tenant.pk)})
    assert by_id.context["cl"].result_count == 1


def test_tenant_actions(admin_client, tenant, other_tenant):
    response = admin_client.post(
        "/admin/tenants/tenant/", {"action": "deactivate", "_selected_action": [tenant.pk, other_tenant.pk]}
    )
    assert response.status_code == 302
    assert not Tenant.objects.filter(is_active=True).exists()
    admin_client.post("/admin/tenants/tenant/", {"action": "activate", "_selected_action": [tenant.pk]})
    assert list(Tenant.objects.filter(is_active=True)) == [tenant]


def test_tenant_form_validates_settings_and_slug(admin_client, tenant):
    url = f"/admin/tenants/tenant/{tenant.pk}/change/"
    assert admin_client.get(url).status_code == 200
    bad = admin_client.post(
        url, {"slug": "acme", "name": "Acme", "is_active": "on", "settings": '{"daily_token_quota": -5}'}
    )
    assert bad.status_code == 200 and b"daily_token_quota" in bad.content
    for slug in ("Not Valid", "Upper", "trailing-"):
        bad_slug = admin_client.post(url, {"slug": slug, "name": "Acme", "is_active": "on", "settings": "{}"})
        assert bad_slug.status_code == 200 and "slug" in bad_slug.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.settings == {"signup_allowed": True}
    ok = admin_client.post(
        url, {"slug": "acme", "name": "Acme", "is_active": "on", "settings": '{"answer_language": "de"}'}
    )
    assert ok.status_code == 302
    tenant.refresh_from_db()
    assert tenant.settings == {"answer_language": "de"}


def test_users_by_tenant_and_role(admin_client, tenant, other_tenant, user, admin_user, other_user):
    page = admin_client.get("/admin/accounts/user/", {"tenant__id__exact": str(tenant.pk)})
    assert page.status_code == 200 and page.context["cl"].result_count == 2
    admins = admin_client.get("/admin/accounts/user/", {"tenant__id__exact": str(tenant.pk), "role__exact": "admin"})
    assert [u.email for u in admins.context["cl"].result_list] == [admin_user.email]
    assert admin_client.get("/admin/accounts/user/", {"q": "globex"}).context["cl"].result_count == 1
    assert admin_client.get(f"/admin/accounts/user/{user.pk}/change/").status_code == 200


def test_user_admin_add_and_deactivate(admin_client, tenant, user):
    assert admin_client.get("/admin/accounts/user/add/").status_code == 200
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "Added@Acme.test",
            "tenant": str(tenant.pk),
            "role": "viewer",
            "full_name": "",
            "usable_password": "true",
            "password1": "a-good-password-77",
            "password2": "a-good-password-77",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    added = User.objects.get(email="added@acme.test")
    assert added.tenant == tenant and added.role == "viewer" and added.check_password("a-good-password-77")
    duplicate = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "added@acme.test",
            "tenant": str(tenant.pk),
            "role": "member",
            "full_name": "",
            "usable_password": "true",
            "password1": "a-good-password-77",
            "password2": "a-good-password-77",
        },
    )
    assert duplicate.status_code == 200 and User.objects.filter(email="added@acme.test").count() == 1
    admin_client.post("/admin/accounts/user/", {"action": "deactivate", "_selected_action": [user.pk]})
    user.refresh_from_db()
    assert not user.is_active


def test_tenant_users_cannot_be_made_staff_in_the_admin(admin_client, user):
    data = {
        "email": user.email,
        "tenant": str(user.tenant_id),
        "role": "member",
        "full_name": "",
        "is_active": "on",
        "is_staff": "on",
    }
    response = admin_client.post(f"/admin/accounts/user/{user.pk}/change/", data)
    assert response.status_code == 200 and b"operators are users without a tenant" in response.content
    user.refresh_from_db()
    assert not user.is_staff


def test_usage_records_are_read_only(admin_client, tenant, user):
    record = UsageRecord.objects.create(
        tenant=tenant, user=user, kind="chat", model="gpt-4o-mini", prompt_tokens=10, completion_tokens=5
    )
    page = admin_client.get("/admin/tenants/usagerecord/")
    assert page.status_code == 200 and b"gpt-4o-mini" in page.content
    assert admin_client.get("/admin/tenants/usagerecord/", {"kind__exact": "chat"}).context["cl"].result_count == 1
    assert admin_client.get("/admin/tenants/usagerecord/add/").status_code == 403
    detail = admin_client.get(f"/admin/tenants/usagerecord/{record.pk}/change/")
    assert detail.status_code == 200 and b'name="prompt_tokens"' not in detail.content
    assert admin_client.post(f"/admin/tenants/usagerecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert UsageRecord.objects.filter(pk=record.pk).exists()


def test_admin_needs_an_operator(db, tenant):
    client = Client()
    assert client.get("/admin/tenants/tenant/").status_code == 302
    member = UserFactory(tenant=tenant)
    client.force_login(member)
    assert client.get("/admin/tenants/tenant/").status_code == 302
