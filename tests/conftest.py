"""Fixtures for the whole suite: tenants, users, authenticated API clients, the cross-tenant helper.

The database is an embedded PostgreSQL with pgvector started by ``config.settings.test`` in a
temporary folder for this session (deleted at the end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.authentication import tokens_for_user
from accounts.models import User
from tenants.models import Tenant
from tests.api_keys import make_key  # noqa: F401  (fixture: API keys through the real service)
from tests.factories import TenantFactory, UserFactory
from tests.fake_openai import fake_openai, fake_openai_server  # noqa: F401  (fixtures: a fake OpenAI-compatible server)
from tests.services import check_markers, missing, require_service, shared_redis_url
from tests.stack import RedisServer
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
        # and the tenant middleware's memory (tenants.lookup): tests roll tenants back without signals
        from tenants.lookup import forget_tenants

        forget_tenants()


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


def pytest_sessionstart(session: pytest.Session) -> None:
    """Forget the HNSW indexes this process made in an earlier session: mutmut (``make mutation``) runs
    pytest again and again in one process, and the next session's test database may not have them."""
    from documents.vectors import forget_known_indexes

    forget_known_indexes()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Service markers (``redis``, ``chromium``, ``docker_compose``): skip with a reason, or fail under CI."""
    check_markers(item)


def missing_service(reason: str) -> None:
    """Skip a test whose service (Redis, chromium, docker-compose) is missing, except under ``CI=true``,
    where CI promised to install it: there the test fails (design.md, "Contracts"). Prefer the markers."""
    missing(reason)


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the distributed-mode tests: ``REDIS_URL`` when it answers, else a private
    ``redis-server`` on a free port for this session (never the machine's shared one)."""
    require_service("redis")
    url = shared_redis_url()
    if url is not None:
        yield url
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def require_redis(redis_service: str) -> str:
    """The session's Redis URL (tests using it carry the ``redis`` marker)."""
    return redis_service


class RateLimitClock:
    """django-ratelimit's clock, frozen: every request of a test falls in the window the test chooses."""

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def window_end(self, key: str, period: int = 60) -> int:
        """The last second of ``key``'s current window (django-ratelimit staggers windows per key)."""
        from django_ratelimit.core import _get_window

        return _get_window(key, period)  # reads django_ratelimit.core.time: this clock, once frozen


@pytest.fixture
def ratelimit_clock(monkeypatch: pytest.MonkeyPatch) -> RateLimitClock:
    """Freeze django-ratelimit's clock (only its own: ``django_ratelimit.core.time``) at the current time.

    Windows are fixed and staggered per key: with the real clock, a burst of requests can straddle
    a window's end and pass a limit it should hit. Tests move the frozen clock with ``advance``.
    """
    import types

    import django_ratelimit.core

    clock = RateLimitClock(float(int(time.time())))
    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=clock.time))
    return clock
