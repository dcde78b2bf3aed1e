"""Helpers of the account tests: reading codes from the (locmem) outbox, signing in over the API."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.models import User
from tenants.models import Tenant
from tests.conftest import make_client
from tests.factories import UserFactory

PASSWORD = "correct-horse-battery-1"  # what UserFactory sets
STRONG = "a-much-better-passphrase-42"


def code_in(message: Any) -> str:
    """The 6-digit code of an e-mail."""
    found = re.findall(r"^\s+(\d{6})\s*$", message.body, flags=re.MULTILINE)
    assert len(found) == 1, message.body
    return found[0]


def last_code(to: str) -> str:
    """The code of the last e-mail sent to ``to``."""
    to = to.strip().lower()
    messages = [m for m in mail.outbox if to in m.to]
    assert messages, f"no e-mail to {to}: {[m.to for m in mail.outbox]}"
    return code_in(messages[-1])


def request_code(client: APIClient, email: str) -> str:
    response = client.post("/api/v1/auth/request-code", {"email": email}, format="json")
    assert response.status_code == 202, response.content
    return last_code(email)


def login(client: APIClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def bearer(tenant: Tenant, access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_TENANT_ID=tenant.slug, HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


@pytest.fixture
def closed_tenant(tenant: Tenant) -> Tenant:
    """The ``acme`` tenant with sign-up closed."""
    tenant.settings = {"signup_allowed": False}
    tenant.save()
    return tenant


@pytest.fixture
def other_admin(other_tenant: Tenant) -> User:
    return UserFactory(tenant=other_tenant, email="admin@globex.test", role=User.Role.ADMIN)


@pytest.fixture
def other_admin_api(other_admin: User) -> APIClient:
    return make_client(other_admin)
