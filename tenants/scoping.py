"""The one scoping mechanism for tenant data in the API.

Every viewset of tenant data derives from :class:`TenantScopedViewSet` (or uses
:class:`TenantScopedMixin`): its queryset is filtered by ``request.tenant`` and, without a tenant, is
empty. Another tenant's id therefore falls through to a 404, never a 403 that would confirm it
exists. ``owner_field`` narrows non-admins to their own rows where a resource is personal.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import viewsets

from tenants.models import Tenant


def request_tenant(request: Any) -> Tenant | None:
    return getattr(request, "tenant", None) or getattr(getattr(request, "_request", None), "tenant", None)


def scope_to_tenant(queryset: QuerySet, tenant: Tenant | None, *, field: str = "tenant") -> QuerySet:
    """Filter ``queryset`` to ``tenant``; no tenant means nothing."""
    if tenant is None:
        return queryset.none()
    return queryset.filter(**{field: tenant})


class TenantScopedMixin:
    """Scope ``get_queryset()`` to the request's tenant (and to the owner for non-admins if set)."""

    tenant_field: str = "tenant"
    owner_field: str | None = None  # e.g. "owner": members and viewers see only their own rows
    request: Any

    def get_queryset(self) -> QuerySet:
        queryset = scope_to_tenant(super().get_queryset(), request_tenant(self.request), field=self.tenant_field)  # type: ignore[misc]
        user = getattr(self.request, "user", None)
        if self.owner_field and not getattr(user, "is_tenant_admin", False):
            queryset = queryset.filter(**{self.owner_field: user})
        return queryset


class TenantScopedViewSet(TenantScopedMixin, viewsets.ModelViewSet):
    """A ModelViewSet over tenant data."""


class TenantScopedReadOnlyViewSet(TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """A read-only viewset over tenant data."""
