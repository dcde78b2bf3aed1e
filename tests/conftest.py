"""Fixtures for the whole suite: tenants, users, authenticated API clients, the cross-tenant helper.

The database is an embedded PostgreSQL with pgvector started by ``config.settings.test`` in a
temporary folder for this session (deleted at the end).
"""

from __future__ import annotations

import os
import socket
import typing
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.authentication import tokens_for_user
from accounts.models import User
from tenants.models import Tenant
from tests.api_keys import make_key  # noqa: F401  (fixture: API keys through the real service)
from tests.factories import TenantFactory, UserFactory
from tests.fake_openai import fake_openai, fake_openai_server  # noqa: F401  (fixtures: a fake OpenAI-compatible server)
from tests.subprocesses import celery_worker_proc, start_celery_worker, subprocess_env  # noqa: F401  (fixtures: worker and child processes on the test database)


@pytest.fixture(autouse=True)
def _clear_cache(request: pytest.FixtureRequest) -> None:
    """Rate-limit counters and sign-in codes live in the cache: start every test that uses the DB clean."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(request.fixturenames)
    if uses_db:
        from django.core.cache import cache

        marker = request.node.get_closest_marker("django_db")
        transactional = "transactional_db" in request.fixturenames or (marker and marker.kwargs.get("transaction"))
        request.getfixturevalue("transactional_db" if transactional else "db")
        cache.clear()


@pytest.fixture
def tenant(db: Any) -> Tenant:
    return TenantFactory(slug="acme", name="Acme")


@pytest.fixture
def other_tenant(db: Any) -> Tenant:
    return TenantFactory(slug="globex", name="Globex")


@pytest.fixture
def user(tenant: Tenant) -> User:
    return UserFactory(tenant=tenant, email="member@acme.test", role=User.Role.MEMBER)


@pytest.fixture
def admin_user(tenant: Tenant) -> User:
    return UserFactory(tenant=tenant, email="admin@acme.test", role=User.Role.ADMIN)


@pytest.fixture
def viewer_user(tenant: Tenant) -> User:
    return UserFactory(tenant=tenant, email="viewer@acme.test", role=User.Role.VIEWER)


@pytest.fixture
def other_user(other_tenant: Tenant) -> User:
    return UserFactory(tenant=other_tenant, email="member@globex.test", role=User.Role.MEMBER)


def make_client(user: User | None = None, tenant: Tenant | None = None) -> APIClient:
    """An APIClient sending ``X-Tenant-ID`` (the user's tenant by default) and the user's bearer token."""
    client = APIClient()
    tenant = tenant or (user.tenant if user else None)
    headers: dict[str, str] = {}
    if tenant is not None:
        headers["HTTP_X_TENANT_ID"] = tenant.slug
    if user is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {tokens_for_user(user)['access']}"
    client.credentials(**headers)
    return client


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    return make_client


@pytest.fixture
def api(user: User) -> APIClient:
    return make_client(user)


@pytest.fixture
def admin_api(admin_user: User) -> APIClient:
    return make_client(admin_user)


@pytest.fixture
def anon_api(tenant: Tenant) -> APIClient:
    return make_client(None, tenant)


def missing_service(reason: str) -> typing.NoReturn:
    """Skip a test whose service (Redis, chromium, docker-compose) is missing, except under ``CI=true``,
    where CI promised to install it: there the test fails (design.md, "Contracts")."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def redis_url() -> str | None:
    """``REDIS_URL`` when a Redis server answers there, else None."""
    url = os.environ.get("DOCUMIND_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        return None
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return url
    except OSError:
        return None


@pytest.fixture
def require_redis() -> str:
    url = redis_url()
    if url is None:
        pytest.skip("Redis not available: set REDIS_URL to a running server to run this test (CI does)")
    return url
