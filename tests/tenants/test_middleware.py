"""X-Tenant-ID resolution: slug or id, fails closed, public paths need none."""

from __future__ import annotations

import json
import uuid

import pytest
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


def run_middleware(path: str, header: str | None = None, method: str = "get"):
    """Run the middleware alone; returns (response, what the view saw)."""
    seen: dict = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen["tenant"] = request.tenant
        seen["context"] = current_tenant.get()
        return HttpResponse("ok")

    extra = {"HTTP_X_TENANT_ID": header} if header is not None else {}
    request = getattr(RequestFactory(), method)(path, **extra)
    return TenantMiddleware(view)(request), seen


@pytest.mark.parametrize("header", ["acme", "ACME", "  acme  "])
def test_slug_resolves(tenant, header):
    response, seen = run_middleware("/api/v1/tasks/", header)
    assert response.status_code == 200
    assert seen["tenant"] == tenant and seen["context"] == tenant
    assert current_tenant.get() is None  # reset after the request


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
