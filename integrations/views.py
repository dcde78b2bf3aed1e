"""``/api/v1/api-keys/`` (tenant admins' keys) and ``/api/v1/webhooks/`` (their endpoints)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsTenantAdmin
from integrations import services
from integrations.models import APIKey
from integrations.serializers import APIKeyCreatedSerializer, APIKeyCreateSerializer, APIKeySerializer
from tenants.scoping import TenantScopedMixin, request_tenant


@extend_schema_view(
    list=extend_schema(summary="List the tenant's API keys (no secrets)"),
    retrieve=extend_schema(summary="One API key (no secret)"),
    create=extend_schema(
        summary="Create an API key; its secret is in this answer only",
        request=APIKeyCreateSerializer,
        responses={201: APIKeyCreatedSerializer},
    ),
    destroy=extend_schema(summary="Revoke an API key (at once; the record is kept)", responses={204: None}),
)
@extend_schema(tags=["api-keys"])
class APIKeyViewSet(
    TenantScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Tenant admins create, list and revoke keys. Keys themselves may only list (``admin`` scope)."""

    queryset = APIKey.objects.select_related("created_by")
    serializer_class = APIKeySerializer
    permission_classes = [IsAuthenticated, IsTenantAdmin]
    filterset_fields: list[str] = []
    search_fields = ["name", "prefix"]
    ordering_fields = ["created_at", "name", "last_used_at"]
    ordering = ["-created_at"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = APIKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = services.api_key_create(
            tenant=request_tenant(request), created_by=request.user, **serializer.validated_data
        )
        return Response(APIKeyCreatedSerializer(key, context={"raw_key": raw}).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.api_key_revoke(key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
