"""Resolve ``X-Tenant-ID`` (slug or id) to ``request.tenant``; fail closed."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from config.errors import DomainError, TenantInactive, TenantNotFound, TenantRequired, error_response
from tenants.context import current_tenant
from tenants.models import Tenant

# API paths that need no tenant. Everything else under /api/ is tenant-scoped.
PUBLIC_API_PREFIXES = ("/api/v1/health", "/api/v1/schema")


def needs_tenant(path: str) -> bool:
    return path.startswith("/api/") and not path.startswith(PUBLIC_API_PREFIXES)


def resolve_tenant(value: str) -> Tenant:
    """The active tenant named by a slug or UUID, or the envelope's 404/403."""
    value = value.strip()
    lookup: dict[str, object]
    try:
        lookup = {"id": uuid.UUID(value)}
    except ValueError:
        lookup = {"slug": value.lower()}
    tenant = Tenant.objects.filter(**lookup).first()
    if tenant is None:
        raise TenantNotFound()
    if not tenant.is_active:
        raise TenantInactive()
    return tenant


class TenantMiddleware:
    """Sets ``request.tenant`` (or None) and the ``current_tenant`` context variable."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.headers.get("X-Tenant-ID", "").strip()
        tenant = None
        if needs_tenant(request.path) and request.method != "OPTIONS":
            try:
                if not header:
                    raise TenantRequired()
                tenant = resolve_tenant(header)
            except DomainError as exc:
                return error_response(exc.status_code, exc.code, exc.message)
        request.tenant = tenant  # type: ignore[attr-defined]
        token = current_tenant.set(tenant)
        if tenant is not None:
            structlog.contextvars.bind_contextvars(tenant=tenant.slug)
        try:
            return self.get_response(request)
        finally:
            current_tenant.reset(token)
