"""``/api/v1/api-keys/`` (tenant admins' keys) and ``/api/v1/webhooks/`` (their endpoints)."""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsTenantAdmin
from config.errors import NotFound
from integrations import services
from integrations.models import APIKey, WebhookDelivery, WebhookEndpoint
from integrations.serializers import (
    APIKeyCreatedSerializer,
    APIKeyCreateSerializer,
    APIKeySerializer,
    WebhookDeliverySerializer,
    WebhookEndpointInputSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointWithSecretSerializer,
)
from tenants.scoping import TenantScopedMixin, TenantScopedViewSet, request_tenant


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


@extend_schema_view(
    list=extend_schema(summary="List the tenant's webhook endpoints (no secrets)"),
    retrieve=extend_schema(summary="One webhook endpoint"),
    create=extend_schema(
        summary="Register an endpoint; its signing secret is in this answer only",
        request=WebhookEndpointInputSerializer,
        responses={201: WebhookEndpointWithSecretSerializer},
    ),
    partial_update=extend_schema(
        summary="Change the URL, events or description; enable or disable",
        request=WebhookEndpointInputSerializer,
        responses={200: WebhookEndpointSerializer},
    ),
    update=extend_schema(
        summary="Replace the URL, events and description",
        request=WebhookEndpointInputSerializer,
        responses={200: WebhookEndpointSerializer},
    ),
    destroy=extend_schema(summary="Delete an endpoint and its delivery records", responses={204: None}),
)
@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(TenantScopedViewSet):
    """Tenant admins' webhook endpoints, their deliveries, redelivery and secret rotation.

    URLs are refused (400, ``details.reason``) when they are not http(s), carry credentials, or
    resolve to loopback, private, link-local or metadata addresses, unless ``WEBHOOK_ALLOWED_HOSTS``
    names the host; the check is repeated at every delivery.
    """

    queryset = WebhookEndpoint.objects.all()
    serializer_class = WebhookEndpointSerializer
    permission_classes = [IsAuthenticated, IsTenantAdmin]
    filterset_fields = ["is_active"]
    search_fields = ["url", "description"]
    ordering_fields = ["created_at", "url"]
    ordering = ["-created_at"]

    def _input(self, request: Request, *, partial: bool) -> dict[str, Any]:
        serializer = WebhookEndpointInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._input(request, partial=False)
        data.pop("is_active", None)
        endpoint = services.webhook_endpoint_create(tenant=request_tenant(request), created_by=request.user, **data)
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        data = self._input(request, partial=kwargs.get("partial", False))
        endpoint = services.webhook_endpoint_update(endpoint=endpoint, **data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    def perform_destroy(self, instance: WebhookEndpoint) -> None:
        services.webhook_endpoint_delete(endpoint=instance)

    @extend_schema(
        summary="Rotate the signing secret", request=None, responses={200: WebhookEndpointWithSecretSerializer}
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        endpoint = services.webhook_endpoint_rotate_secret(endpoint=self.get_object())
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data)

    @extend_schema(
        summary="The endpoint's deliveries, newest first", responses={200: WebhookDeliverySerializer(many=True)}
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        endpoint = self.get_object()
        queryset = WebhookDelivery.objects.for_tenant(endpoint.tenant).filter(endpoint=endpoint).order_by("-created_at")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)

    @extend_schema(
        summary="Send a delivery again (same webhook-id, a new record)",
        parameters=[OpenApiParameter("delivery_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=None,
        responses={202: WebhookDeliverySerializer},
    )
    @action(detail=True, methods=["post"], url_path=r"deliveries/(?P<delivery_id>[^/.]+)/redeliver")
    def redeliver(self, request: Request, pk: str | None = None, delivery_id: str | None = None) -> Response:
        endpoint = self.get_object()
        delivery = (
            WebhookDelivery.objects.for_tenant(endpoint.tenant)
            .filter(endpoint=endpoint, pk=_uuid_or_404(delivery_id))
            .first()
        )
        if delivery is None:
            raise NotFound("No such delivery.")
        again = services.webhook_redeliver(delivery=delivery)
        return Response(WebhookDeliverySerializer(again).data, status=status.HTTP_202_ACCEPTED)


def _uuid_or_404(value: str | None) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound("No such delivery.") from exc
