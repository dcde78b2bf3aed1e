"""Role checks: admins manage the tenant, members write, viewers read."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request


class IsTenantAdmin(BasePermission):
    message = "Only tenant admins can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and getattr(request.user, "is_tenant_admin", False))


class IsMemberOrReadOnly(BasePermission):
    """Viewers may read; members and admins may also write."""

    message = "Viewers can only read."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or user.role in ("admin", "member")
