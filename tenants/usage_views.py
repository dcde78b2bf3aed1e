"""``GET /api/v1/usage/``: tokens and requests of the last 24 hours and 7 days, quotas and what is left."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import ValidationFailed
from tenants.scoping import request_tenant
from tenants.usage import quota_status, usage_by_user, usage_summary

_window = inline_serializer(
    "UsageWindow",
    {
        "prompt_tokens": serializers.IntegerField(),
        "completion_tokens": serializers.IntegerField(),
        "embedding_tokens": serializers.IntegerField(),
        "total_tokens": serializers.IntegerField(),
        "requests": serializers.IntegerField(),
    },
)
_quota = inline_serializer(
    "UsageQuota",
    {
        "scope": serializers.CharField(),
        "limit": serializers.IntegerField(allow_null=True),
        "used": serializers.IntegerField(),
        "remaining": serializers.IntegerField(allow_null=True),
        "resets_at": serializers.DateTimeField(),
    },
)
_usage = inline_serializer(
    "Usage",
    {
        "scope": serializers.ChoiceField(choices=["user", "tenant"]),
        "last_24h": _window,
        "last_7d": _window,
        "quota": inline_serializer("UsageQuotas", {"user": _quota, "tenant": _quota}),
        "remaining_today": serializers.IntegerField(allow_null=True),
        "users": inline_serializer(
            "UsageByUser",
            {
                "user_id": serializers.UUIDField(allow_null=True),
                "email": serializers.EmailField(allow_null=True),
                "last_24h": _window,
                "last_7d": _window,
            },
            many=True,
            required=False,
        ),
    },
)


class UsageView(APIView):
    """The caller's usage (``?scope=user``, the default) or, for tenant admins, the tenant's
    (``?scope=tenant``) with a per-user breakdown. Quotas are per UTC day."""

    @extend_schema(
        tags=["tenant"],
        summary="Token and request usage of the last 24 hours and 7 days, and what is left of today's quota",
        parameters=[OpenApiParameter("scope", str, enum=["user", "tenant"], required=False)],
        responses={200: _usage},
    )
    def get(self, request: Request) -> Response:
        scope = request.query_params.get("scope", "user")
        if scope not in ("user", "tenant"):
            raise ValidationFailed(
                "scope must be 'user' or 'tenant'.", details={"fields": {"scope": ["Invalid choice."]}}
            )
        tenant = request_tenant(request)
        user = request.user
        if scope == "tenant" and not getattr(user, "is_tenant_admin", False):
            raise PermissionDenied("Only tenant admins can see the whole tenant's usage.")
        quotas = {q.scope: q for q in quota_status(tenant=tenant, user=user)}
        remaining = [q.remaining for q in quotas.values() if q.remaining is not None]
        body: dict[str, Any] = {
            "scope": scope,
            **usage_summary(tenant=tenant, user=user if scope == "user" else None),
            "quota": {name: quota.as_dict() for name, quota in quotas.items()},
            "remaining_today": min(remaining) if remaining else None,
        }
        if scope == "tenant":
            body["users"] = usage_by_user(tenant=tenant)
        return Response(body)
