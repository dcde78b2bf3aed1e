"""X-Tenant-ID resolution: slug or id, fails closed, public paths need none."""

from __future__ import annotations

import json
import logging
import uuid
from types import SimpleNamespace
from typing import Any

import django_ratelimit.core
import pytest
import structlog
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from tenants.context import current_tenant
from tenants.middleware import TenantMiddleware
from tests.crosstenant import assert_envelope

ME = "/api/v1/auth/me"


def error_of(response: HttpResponse, status: int, code: str) -> dict:
    """The envelope's error of a bare middleware response (no request-id middleware in front of it)."""
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"} and body["error"]["type"] == code, body
    return body["error"]


def run_middleware(path: str, header: str | None = None, method: str = "get", remote_addr: str = "127.0.0.1"):
    """Run the middleware alone; returns (response, what the view saw)."""
    seen: dict = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen["tenant"] = request.tenant
        seen["context"] = current_tenant.get()
        seen["log_tenant"] = structlog.contextvars.get_contextvars().get("tenant")
        return HttpResponse("ok")

    extra: dict[str, Any] = {"HTTP_X_TENANT_ID": header} if header is not None else {}
    extra["REMOTE_ADDR"] = remote_addr
    request = getattr(RequestFactory(), method)(path, **extra)
    return TenantMiddleware(view)(request), seen


@pytest.mark.parametrize("header", ["acme", "ACME", "  acme  "])
def test_slug_resolves(tenant, header):
    response, seen = run_middleware("/api/v1/tasks/", header)
    assert response.status_code == 200
    assert seen["tenant"] == tenant and seen["context"] == tenant
    assert current_tenant.get() is None  # reset after the request


def test_the_tenant_is_named_in_the_logs_context(tenant):
    structlog.contextvars.clear_contextvars()
    try:
        response, seen = run_middleware("/api/v1/tasks/", "ACME")
        assert response.status_code == 200 and seen["log_tenant"] == "acme"
    finally:
        structlog.contextvars.clear_contextvars()


def test_id_resolves(tenant):
    for header in (str(tenant.pk), str(tenant.pk).upper(), tenant.pk.hex):
        response, seen = run_middleware("/api/v1/tasks/", header)
        assert response.status_code == 200 and seen["tenant"] == tenant


@pytest.mark.parametrize(
    ("header", "status", "code"),
    [
        (None, 400, "tenant_required"),
        ("", 400, "tenant_required"),
        ("   ", 400, "tenant_required"),
        ("nope", 404, "tenant_not_found"),
        (str(uuid.uuid4()), 404, "tenant_not_found"),
        ("acme'; DROP TABLE tenants_tenant; --", 404, "tenant_not_found"),
        ("x" * 5000, 404, "tenant_not_found"),
    ],
)
def test_bad_headers_fail_closed(tenant, header, status, code):
    response, seen = run_middleware("/api/v1/tasks/", header)
    assert seen == {}  # the view never ran
    error_of(response, status, code)


def test_inactive_tenant_is_403(tenant):
    tenant.is_active = False
    tenant.save()
    for header in ("acme", str(tenant.pk)):
        response, seen = run_middleware("/api/v1/tasks/", header)
        assert seen == {}
        error = error_of(response, 403, "tenant_inactive")
        assert "deactivated" in error["message"]


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/api/v1/health", "/api/v1/health/live", "/api/v1/schema/", "/docs", "/admin/login/"]
)
def test_public_paths_need_no_tenant(db, path):
    response, seen = run_middleware(path)
    assert response.status_code == 200 and seen["tenant"] is None and seen["context"] is None


def test_public_paths_ignore_a_header(tenant):
    response, seen = run_middleware("/api/v1/health", "acme")
    assert response.status_code == 200 and seen["tenant"] is None


def test_cors_preflight_needs_no_tenant(db):
    response, seen = run_middleware("/api/v1/tasks/", method="options")
    assert response.status_code == 200 and seen["tenant"] is None


def test_full_stack(db, client, tenant):
    assert client.get("/api/v1/health").status_code == 200
    assert_envelope(client.get(ME), 400, "tenant_required")
    assert_envelope(client.get(ME, HTTP_X_TENANT_ID="nope"), 404, "tenant_not_found")
    # a known tenant without a token gets as far as authentication
    assert_envelope(client.get(ME, HTTP_X_TENANT_ID="acme"), 401, "not_authenticated")
    tenant.is_active = False
    tenant.save()
    assert_envelope(client.get(ME, HTTP_X_TENANT_ID="acme"), 403, "tenant_inactive")


MISSES_GROUP = "tenant-header-misses"


def test_too_many_unknown_tenants_from_one_address_are_refused_until_the_window_ends(tenant, settings, monkeypatch):
    """The limiter's refusal: its message, ``retry_after`` as in ``Retry-After``, at least 1 s even at the
    window's last instant (django-ratelimit's clock held at the end of this address's window)."""
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_TENANT_MISSES_PER_MINUTE = 2
    address = "198.51.100.7"
    window_end = django_ratelimit.core._get_window(f"ip:{address}", 60)
    monkeypatch.setattr(django_ratelimit.core, "time", SimpleNamespace(time=lambda: float(window_end)))
    for guess in ("nope-1", "nope-2"):
        error_of(run_middleware("/api/v1/tasks/", guess, remote_addr=address)[0], 404, "tenant_not_found")
    response, seen = run_middleware("/api/v1/tasks/", "acme", remote_addr=address)
    assert seen == {}
    error = error_of(response, 429, "rate_limited")
    assert error["message"] == "Too many unknown tenants from this address; try again later."
    assert error["details"] == {"retry_after": 1} and response["Retry-After"] == "1"
    # a known tenant from another address, and the misses of the first one are not its own
    assert run_middleware("/api/v1/tasks/", "acme", remote_addr="198.51.100.8")[0].status_code == 200


def test_the_unknown_tenant_limit_fails_open_when_the_cache_is_down(tenant, settings, caplog):
    """Unreachable shared cache: the header is still resolved (404 for an unknown one, not a 503) and a
    warning names the limiter, for the read before the lookup and for the miss it failed to count."""
    settings.RATELIMIT_ENABLED = True
    settings.CACHES = {
        **settings.CACHES,
        "down": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"},
    }
    settings.RATELIMIT_USE_CACHE = "down"
    with caplog.at_level(logging.WARNING, logger="config.throttling"):
        error_of(run_middleware("/api/v1/tasks/", "nope")[0], 404, "tenant_not_found")
    warnings = [r for r in caplog.records if r.getMessage() == "ratelimit_unavailable"]
    assert [(r.group, r.fails) for r in warnings] == [(MISSES_GROUP, "open"), (MISSES_GROUP, "open")]
    assert run_middleware("/api/v1/tasks/", "acme")[0].status_code == 200


def test_without_rate_limits_unknown_tenants_are_never_refused(tenant, settings):
    settings.RATELIMIT_ENABLED = False
    settings.RATELIMIT_TENANT_MISSES_PER_MINUTE = 1
    for guess in ("nope-1", "nope-2", "nope-3"):
        error_of(run_middleware("/api/v1/tasks/", guess)[0], 404, "tenant_not_found")
    response, seen = run_middleware("/api/v1/tasks/", " acme ")
    assert response.status_code == 200 and seen["tenant"] == tenant
