"""Rate limiting on every API view: per IP when anonymous, per user when signed in, in the shared cache."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django_ratelimit.core import _get_window
from rest_framework.test import APIClient

from tests.conftest import make_client
from tests.crosstenant import assert_envelope
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.foundation.urls")]

ECHO = "/api/v1/_t/echo"


@pytest.fixture(autouse=True)
def _limit_of_three(settings: Any, request: pytest.FixtureRequest) -> None:
    """A limit of 3 a minute, on a frozen clock (no burst straddles a window's end) unless the test runs
    another process, which has the real one (that test aligns itself on a window)."""
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_PER_MINUTE = 3
    if "subprocess_env" not in request.fixturenames:
        request.getfixturevalue("ratelimit_clock")


def exhaust(client: APIClient, url: str, allowed: int, **extra: Any) -> None:
    for i in range(allowed):
        response = client.get(url, **extra)
        assert response.status_code == 200, (i, response.content)


def assert_limited(response: Any, key: str | None = None, clock: Any = None) -> None:
    """429 ``rate_limited``; with ``key``/``clock``, Retry-After is exactly the rest of key's window."""
    error = assert_envelope(response, 429, "rate_limited")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after
    if key is not None:
        assert retry_after == max(1, clock.window_end(key) - int(clock.now))


def test_anonymous_requests_are_limited_per_ip(anon_api: APIClient, ratelimit_clock: Any) -> None:
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.0.1")
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.0.1"), "ip:10.0.0.1", ratelimit_clock)
    # another client IP has its own budget
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.0.2")
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.0.2"))


def test_signed_in_requests_are_limited_per_user_whatever_the_ip(api: APIClient, tenant: Any) -> None:
    for i in range(3):
        assert api.get(ECHO, REMOTE_ADDR=f"10.1.0.{i}").status_code == 200
    assert_limited(api.get(ECHO, REMOTE_ADDR="10.1.0.99"))
    # another user of the same tenant, from the same IP, is not affected
    colleague = make_client(UserFactory(tenant=tenant, email="colleague@acme.test"))
    exhaust(colleague, ECHO, 3, REMOTE_ADDR="10.1.0.0")
    # nor is an anonymous client from that IP
    exhaust(make_client(None, tenant), ECHO, 3, REMOTE_ADDR="10.1.0.0")


def test_the_limit_covers_every_api_view_and_errors_count(anon_api: APIClient) -> None:
    for _ in range(3):
        anon_api.post(ECHO, {"name": ""}, format="json")  # 400s count too
    assert_limited(anon_api.get(ECHO))
    assert_limited(anon_api.post(ECHO, {"name": "ok"}, format="json"))


def test_a_view_can_declare_a_stricter_limit(anon_api: APIClient) -> None:
    exhaust(anon_api, "/api/v1/_t/strict", 2)
    assert_limited(anon_api.get("/api/v1/_t/strict"))
    # the stricter view has its own bucket: the default budget is untouched
    exhaust(anon_api, ECHO, 3)


def test_the_budget_comes_back_when_the_window_ends(anon_api: APIClient, ratelimit_clock: Any) -> None:
    key = "ip:10.0.3.3"
    ratelimit_clock.now = float(ratelimit_clock.window_end(key) - 59)  # the first second of a window
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.3.3")
    ratelimit_clock.advance(59)  # its last second still belongs to it
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.3.3"), key, ratelimit_clock)
    ratelimit_clock.advance(1)  # the next window: a fresh budget
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.3.3")
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.3.3"), key, ratelimit_clock)


def test_health_endpoints_are_never_limited(client: Any) -> None:
    for _ in range(6):
        assert client.get("/api/v1/health/live").status_code == 200


def test_ratelimit_enabled_switch(anon_api: APIClient, settings: Any) -> None:
    settings.RATELIMIT_ENABLED = False
    exhaust(anon_api, ECHO, 10)
    exhaust(anon_api, "/api/v1/_t/strict", 5)


def test_the_counts_live_in_the_shared_cache(anon_api: APIClient) -> None:
    exhaust(anon_api, ECHO, 3)
    assert_limited(anon_api.get(ECHO))
    cache.clear()  # what every process shares: clearing it resets the budget
    exhaust(anon_api, ECHO, 3)


@pytest.mark.django_db(transaction=True)
@pytest.mark.django_db(transaction=True)  # the other process must see this one's tenant and counts
def test_the_limit_holds_across_processes(tenant: Any, subprocess_env: dict[str, str]) -> None:
    """Another process (another daphne, say) sees the same counts: two requests here, two there."""
    # The limit is a fixed one-minute window (its start offset depends on the key): start well inside
    # one, so starting the subprocess cannot carry the second half of the test into a fresh window.
    # _get_window returns the window's last (integer) second, which still belongs to it: the next
    # window starts one second later.
    left = _get_window("ip:10.9.9.9", 60) + 1 - time.time()
    if left < 30:
        time.sleep(left + 0.5)
    client = make_client(None, tenant)
    exhaust(client, ECHO, 2, REMOTE_ADDR="10.9.9.9")
    script = (
        "import django; django.setup()\n"
        "from django.test import override_settings\n"
        "from rest_framework.test import APIClient\n"
        "c = APIClient(HTTP_X_TENANT_ID='acme', REMOTE_ADDR='10.9.9.9')\n"
        "with override_settings(ROOT_URLCONF='tests.foundation.urls', RATELIMIT_PER_MINUTE=3):\n"
        "    print(c.get('/api/v1/_t/echo').status_code, c.get('/api/v1/_t/echo').status_code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["200", "429"]


@pytest.fixture
def process_counter(settings: Any) -> Any:
    from config.throttling import PROCESS_COUNTER

    settings.RATELIMIT_API_COUNTER = "process"
    PROCESS_COUNTER.clear()
    yield PROCESS_COUNTER
    PROCESS_COUNTER.clear()


def test_the_general_limit_counts_in_the_shared_cache_by_default() -> None:
    from config.settings import base

    assert base.RATELIMIT_API_COUNTER == "shared"


def test_the_general_limit_can_count_in_the_process(
    anon_api: APIClient, ratelimit_clock: Any, process_counter: Any
) -> None:
    key = "ip:10.0.4.4"
    ratelimit_clock.now = float(ratelimit_clock.window_end(key) - 59)  # the first second of a window
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.4.4")
    ratelimit_clock.advance(59)  # its last second still belongs to it
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.4.4"), key, ratelimit_clock)
    cache.clear()  # not counted there: still limited
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.4.4"), key, ratelimit_clock)
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.4.5")  # another client has its own budget
    ratelimit_clock.advance(1)  # the next window: a fresh budget
    exhaust(anon_api, ECHO, 3, REMOTE_ADDR="10.0.4.4")
    assert_limited(anon_api.get(ECHO, REMOTE_ADDR="10.0.4.4"), key, ratelimit_clock)


def test_signed_in_users_are_counted_in_the_process_per_user(api: APIClient, tenant: Any, process_counter: Any) -> None:
    exhaust(api, ECHO, 3, REMOTE_ADDR="10.0.0.1")
    assert_limited(api.get(ECHO, REMOTE_ADDR="10.0.0.2"))
    colleague = make_client(UserFactory(tenant=tenant, email="colleague@acme.test"))
    exhaust(colleague, ECHO, 3, REMOTE_ADDR="10.0.0.1")


def test_stricter_view_limits_stay_in_the_shared_cache_with_a_process_counter(
    anon_api: APIClient, process_counter: Any
) -> None:
    exhaust(anon_api, "/api/v1/_t/strict", 2)
    assert_limited(anon_api.get("/api/v1/_t/strict"))
    cache.clear()  # what every process shares: clearing it resets this budget
    exhaust(anon_api, "/api/v1/_t/strict", 2)


def test_a_known_tenant_costs_the_unknown_tenant_counter_a_read_not_a_write(
    api: APIClient, process_counter: Any
) -> None:
    """With the general limit in the process, a signed-in request leaves the shared cache as it was:
    the unknown-tenant counter is read (one SELECT), not added to."""
    from django.db import connection

    cache.clear()
    exhaust(api, ECHO, 2)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM documind_cache")
        assert cursor.fetchone()[0] == 0
