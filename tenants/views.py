"""``GET/PATCH /api/v1/tenant/``: the caller's tenant; its admins change the name and settings."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsTenantAdmin
from config.errors import TenantRequired
from tenants.models import Tenant
from tenants.scoping import request_tenant
from tenants.serializers import TenantSerializer, TenantUpdateSerializer
from tenants.services import tenant_update


def _tenant(request: Request) -> Tenant:
    tenant = request_tenant(request)
    if tenant is None:
        raise TenantRequired()
    return tenant


class TenantView(APIView):
    """Every user of the tenant may read it; only its admins may change it."""

    def get_permissions(self) -> list[BasePermission]:
        if self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsAuthenticated()]
        return [IsAuthenticated(), IsTenantAdmin()]

    @extend_schema(tags=["tenant"], summary="Your tenant and its settings", responses={200: TenantSerializer})
    def get(self, request: Request) -> Response:
        return Response(TenantSerializer(_tenant(request)).data)

    @extend_schema(
        tags=["tenant"],
        summary="Rename the tenant or change settings (admins)",
        description="Settings are merged into the stored ones; a null value restores a key's default.",
        request=TenantUpdateSerializer,
        responses={200: TenantSerializer},
    )
    def patch(self, request: Request) -> Response:
        tenant = _tenant(request)
        serializer = TenantUpdateSerializer(data=request.data, context={"current": dict(tenant.settings or {})})
        serializer.is_valid(raise_exception=True)
        updated = tenant_update(
            tenant=tenant,
            name=serializer.validated_data.get("name"),
            settings=serializer.validated_data.get("settings"),
        )
        return Response(TenantSerializer(updated).data)
