"""``manage.py init_deployment``: the compose init step, from environment variables, idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

ENV = {
    "DOCUMIND_INIT_TENANT": "acme",
    "DOCUMIND_INIT_TENANT_NAME": "Acme Corp",
    "DOCUMIND_INIT_ADMIN_EMAIL": "Boss@Acme.test",
    "DOCUMIND_INIT_ADMIN_PASSWORD": "a-long-admin-passphrase-7",
    "DOCUMIND_INIT_OPERATOR_EMAIL": "ops@example.com",
    "DOCUMIND_INIT_OPERATOR_PASSWORD": "a-long-operator-passphrase-8",
}


def run() -> str:
    out = StringIO()
    call_command("init_deployment", stdout=out)
    return out.getvalue()


def test_creates_the_tenant_its_admin_and_an_operator_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    output = run()
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == "Acme Corp" and "Created tenant 'acme'" in output
    admin = User.objects.get(email="boss@acme.test")
    assert (
        admin.tenant == tenant
        and admin.role == User.Role.ADMIN
        and admin.check_password(ENV["DOCUMIND_INIT_ADMIN_PASSWORD"])
    )
    operator = User.objects.get(email="ops@example.com")
    assert operator.tenant is None and operator.is_staff and operator.is_superuser
    assert operator.check_password(ENV["DOCUMIND_INIT_OPERATOR_PASSWORD"])

    monkeypatch.setenv("DOCUMIND_INIT_OPERATOR_PASSWORD", "changed-but-ignored-9")
    again = run()  # every `docker compose up` runs it: nothing changes, exit 0
    assert "left as it is" in again and again.count("left as it is") == 2
    assert Tenant.objects.count() == 1 and User.objects.count() == 2
    assert User.objects.get(email="ops@example.com").check_password(ENV["DOCUMIND_INIT_OPERATOR_PASSWORD"])


def test_nothing_set_is_nothing_to_do() -> None:
    assert "nothing to do" in run()


def test_bad_input_fails_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUMIND_INIT_OPERATOR_EMAIL", "ops@example.com")
    with pytest.raises(CommandError, match="needs DOCUMIND_INIT_OPERATOR_PASSWORD"):
        run()
    monkeypatch.setenv("DOCUMIND_INIT_OPERATOR_PASSWORD", "short")
    with pytest.raises(CommandError, match="DOCUMIND_INIT_OPERATOR_PASSWORD: "):
        run()
    monkeypatch.setenv("DOCUMIND_INIT_TENANT", "Not A Slug!")
    with pytest.raises(CommandError):
        run()
    assert not User.objects.exists() and not Tenant.objects.exists()
