"""``GET /api/v1/audit/``: the tenant's audit log for its admins (read-only: there is nothing to write)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.permissions import IsAuthenticated

from accounts.permissions import IsTenantAdmin
from audit.filters import AuditEventFilter
from audit.models import AuditEvent
from audit.serializers import AuditEventSerializer
from tenants.scoping import TenantScopedReadOnlyViewSet


@extend_schema_view(
    list=extend_schema(summary="The tenant's audit log, newest first (admins)"),
    retrieve=extend_schema(summary="One audit event (admins)"),
)
@extend_schema(tags=["audit"])
class AuditEventViewSet(TenantScopedReadOnlyViewSet):
    """Filters: ``action``, ``action_prefix``, ``actor_type``, ``actor_id``, ``object_type``,
    ``object_id``, ``since``, ``until`` (ISO 8601). Changing or deleting a row is a 405 here, refused
    by the admin, and raises in the database."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [IsAuthenticated, IsTenantAdmin]
    filterset_class = AuditEventFilter
    search_fields = ["action", "actor_label", "object_label"]
    ordering_fields = ["created_at", "action"]
    ordering = ["-created_at", "-id"]
