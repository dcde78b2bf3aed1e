"""create_tenant, list_tenants, deactivate_tenant: good and bad input, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from tenants.models import Tenant
from tests.accounts.conftest import STRONG, login
from tests.conftest import make_client
from tests.factories import TenantFactory, UserFactory


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- create_tenant ---------------------------------------------------------------------------


def test_create_tenant_with_an_admin_who_can_sign_in(db):
    out = run(
        "create_tenant",
        "initech",
        "--name",
        "Initech",
        "--admin-email",
        "Boss@Initech.test",
        "--admin-password",
        STRONG,
        "--admin-name",
        "Bill",
    )
    tenant = Tenant.objects.get(slug="initech")
    assert (
        tenant.name == "Initech" and tenant.is_active and tenant.settings == {"embedder": "hashing"}
    )  # pinned at creation
    assert "Created tenant 'initech'" in out and str(tenant.pk) in out and "boss@initech.test" in out
    admin = User.objects.get(tenant=tenant)
    assert admin.email == "boss@initech.test" and admin.role == "admin" and admin.full_name == "Bill"
    assert admin.email_verified and not admin.is_staff
    body = login(make_client(None, tenant), "boss@initech.test", STRONG)
    assert body["user"]["role"] == "admin"


def test_create_tenant_without_admin_or_password(db):
    run("create_tenant", "solo", "--name", "Solo")
    assert Tenant.objects.get(slug="solo").users.count() == 0
    out = run("create_tenant", "codes", "--name", "Codes", "--admin-email", "a@codes.test")
    admin = User.objects.get(email="a@codes.test")
    assert not admin.has_usable_password() and "e-mailed code" in out


def test_create_tenant_with_settings(db):
    run("create_tenant", "open", "--name", "Open", "--allow-signup", "--tenant-settings", '{"answer_language": "de"}')
    assert Tenant.objects.get(slug="open").settings == {
        "answer_language": "de",
        "signup_allowed": True,
        "embedder": "hashing",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Slug", "--name", "X"], "Invalid slug"),
        (["UPPER", "--name", "X"], "Invalid slug"),
        (["trailing-", "--name", "X"], "Invalid slug"),
        (["under_score", "--name", "X"], "Invalid slug"),
        (["a" * 64, "--name", "X"], "Invalid slug"),
        (["123e4567-e89b-12d3-a456-426614174000", "--name", "X"], "UUID"),
        (["ok", "--name", "   "], "name"),
        (["ok"], "--name"),
        (["ok", "--name", "X", "--admin-email", "not-an-email"], "email"),
        (["ok", "--name", "X", "--admin-email", "a@ok.test", "--admin-password", "password"], "password"),
        (["ok", "--name", "X", "--admin-password", STRONG], "--admin-email"),
        (["ok", "--name", "X", "--tenant-settings", "{nope"], "not valid JSON"),
        (["ok", "--name", "X", "--tenant-settings", "[1]"], "JSON object"),
        (["ok", "--name", "X", "--tenant-settings", '{"colour": "red"}'], "colour"),
        (["ok", "--name", "X", "--tenant-settings", '{"daily_token_quota": -1}'], "daily_token_quota"),
    ],
)
def test_create_tenant_bad_input(db, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_tenant", *args)
    assert not Tenant.objects.exists() and not User.objects.exists()  # nothing half-made


def test_create_tenant_duplicate_slug(tenant):
    with pytest.raises(CommandError, match="already exists"):
        run("create_tenant", "acme", "--name", "Acme again")
    assert Tenant.objects.count() == 1


def test_create_tenant_exists_ok(tenant):
    out = run("create_tenant", "acme", "--name", "Acme", "--exists-ok", "--admin-email", "x@acme.test")
    assert "already exists" in out and not User.objects.filter(email="x@acme.test").exists()
    run("create_tenant", "fresh", "--name", "Fresh", "--exists-ok")
    assert Tenant.objects.filter(slug="fresh").exists()


# --- list_tenants ----------------------------------------------------------------------------


def test_list_tenants(tenant, other_tenant, user, admin_user):
    UserFactory(tenant=tenant, is_active=False)
    other_tenant.is_active = False
    other_tenant.save()
    out = run("list_tenants")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["SLUG", "NAME", "ACTIVE", "USERS", "ID"]
    assert lines[1].split() == ["acme", "Acme", "yes", "2/3", str(tenant.pk)]
    assert lines[2].split() == ["globex", "Globex", "no", "0/0", str(other_tenant.pk)]
    assert "globex" not in run("list_tenants", "--active")
    assert "acme" not in run("list_tenants", "--inactive")
    rows = json.loads(run("list_tenants", "--json"))
    assert [(r["slug"], r["active"], r["users"]) for r in rows] == [("acme", True, 3), ("globex", False, 0)]


def test_list_tenants_when_there_are_none(db):
    assert "No tenants" in run("list_tenants")


def test_list_tenants_bad_input(db):
    with pytest.raises(CommandError):
        run("list_tenants", "--active", "--inactive")


# --- deactivate_tenant -----------------------------------------------------------------------


def test_deactivate_and_reactivate(tenant, user):
    client = make_client(user)
    assert "now inactive" in run("deactivate_tenant", "acme")
    tenant.refresh_from_db()
    assert not tenant.is_active
    assert client.get("/api/v1/auth/me").json()["error"]["type"] == "tenant_inactive"
    assert "already inactive" in run("deactivate_tenant", str(tenant.pk))
    assert "now active" in run("deactivate_tenant", "ACME", "--reactivate")
    assert client.get("/api/v1/auth/me").status_code == 200


@pytest.mark.parametrize("identifier", ["nope", "00000000-0000-0000-0000-000000000000", ""])
def test_deactivate_unknown_tenant(db, identifier):
    TenantFactory(slug="keep")
    with pytest.raises(CommandError, match="No tenant matches"):
        run("deactivate_tenant", identifier)
    assert Tenant.objects.get(slug="keep").is_active


# --- the real command line: exit code 1 and no traceback -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_command_line_exit_codes(subprocess_env):
    TenantFactory(slug="taken")
    env = subprocess_env
    manage = str(Path(settings.BASE_DIR) / "manage.py")
    for args, needle in (
        (["create_tenant", "taken", "--name", "Again"], "already exists"),
        (["create_tenant", "fine"], "--name"),
        (["deactivate_tenant", "ghost"], "No tenant matches"),
    ):
        done = subprocess.run([sys.executable, manage, *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, (args, done.returncode, done.stderr)
        assert needle in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = subprocess.run(
        [sys.executable, manage, "list_tenants"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "taken" in done.stdout, done.stderr
