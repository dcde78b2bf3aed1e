"""Resolve ``X-Tenant-ID`` (slug or id) to ``request.tenant``; fail closed.

Unknown, inactive and malformed values are counted per client IP (``RATELIMIT_TENANT_MISSES_PER_MINUTE``
in the shared cache): past the limit that IP gets 429 for any ``X-Tenant-ID`` until the window
ends, before anything is looked up, so tenants cannot be enumerated by trying names.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import AuthenticationFailed

from config.errors import DomainError, RateLimited, TenantInactive, TenantNotFound, TenantRequired, error_response
from config.throttling import shared_count, shared_usage
from tenants.context import current_tenant
from tenants.lookup import cached_tenant
from tenants.models import Tenant

# API paths that need no tenant. Everything else under /api/ is tenant-scoped.
PUBLIC_API_PREFIXES = ("/api/v1/health", "/api/v1/schema")


def needs_tenant(path: str) -> bool:
    return path.startswith("/api/") and not path.startswith(PUBLIC_API_PREFIXES)


SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def resolve_tenant(value: str) -> Tenant:
    """The active tenant named by a slug or UUID, or the envelope's 404/403 (a malformed value is a 404)."""
    value = value.strip()
    lookup: dict[str, object]
    try:
        lookup = {"id": uuid.UUID(value)}
    except ValueError:
        if not SLUG_RE.fullmatch(value.lower()):
            raise TenantNotFound() from None
        lookup = {"slug": value.lower()}
    ((field, key),) = lookup.items()
    tenant = cached_tenant(field, key, Tenant.objects.filter(**lookup).first)  # active ones, for a few seconds
    if tenant is None:
        raise TenantNotFound()
    if not tenant.is_active:
        raise TenantInactive()
    return tenant


def _client_ip(group: str, request: HttpRequest) -> str:
    return "ip:" + (request.META.get("REMOTE_ADDR") or "unknown")


def _misses(request: HttpRequest, *, count: bool) -> dict[str, Any] | None:
    # Read on every tenant-scoped request (one cache read, no write), counted on a miss: like the
    # general limit, it fails open (with a warning) when the shared cache is down, or the whole API
    # would go down with it.
    group, rate = "tenant-header-misses", f"{settings.RATELIMIT_TENANT_MISSES_PER_MINUTE}/m"
    if not count:
        return shared_count(request, group=group, key=_client_ip, rate=rate)
    return shared_usage(request, group=group, key=_client_ip, rate=rate, fail_open=True)


def resolve_tenant_limited(request: HttpRequest, value: str) -> Tenant:
    """:func:`resolve_tenant`, refused (429) for a client IP that named too many unknown tenants lately."""
    if not settings.RATELIMIT_ENABLED:
        return resolve_tenant(value)
    usage = _misses(request, count=False)
    if usage and usage["count"] >= usage["limit"]:
        wait = max(1, int(usage["time_left"]))
        raise RateLimited(
            "Too many unknown tenants from this address; try again later.",
            details={"retry_after": wait},
            headers={"Retry-After": str(wait)},
        )
    try:
        return resolve_tenant(value)
    except (TenantNotFound, TenantInactive):
        _misses(request, count=True)
        raise


def tenant_from_api_key(request: HttpRequest) -> Tenant | None:
    """The tenant an ``Authorization: Api-Key`` header implies (the key is verified, and kept on the request).

    None without such a header; ``AuthenticationFailed`` for a bad, revoked or expired key.
    """
    from integrations.authentication import verified_key_for  # integrations builds on tenants
    from integrations.keys import key_from_authorization

    raw = key_from_authorization(request.headers.get("Authorization"))
    if raw is None:
        return None
    return verified_key_for(request, raw).tenant


class TenantMiddleware:
    """Sets ``request.tenant`` (or None) and the ``current_tenant`` context variable."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.headers.get("X-Tenant-ID", "").strip()
        tenant = None
        if needs_tenant(request.path) and request.method != "OPTIONS":
            try:
                tenant = tenant_from_api_key(request) if not header else None
                if tenant is None:
                    if not header:
                        raise TenantRequired()
                    tenant = resolve_tenant_limited(request, header)
            except DomainError as exc:
                return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)
            except AuthenticationFailed as exc:
                return error_response(401, "authentication_failed", str(exc.detail))
        request.tenant = tenant  # type: ignore[attr-defined]
        token = current_tenant.set(tenant)
        if tenant is not None:
            structlog.contextvars.bind_contextvars(tenant=tenant.slug)
        try:
            return self.get_response(request)
        finally:
            current_tenant.reset(token)
