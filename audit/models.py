"""The audit log: an append-only record of security-relevant actions.

Append-only is enforced by PostgreSQL, not by the absence of an endpoint: a trigger (migration
0002) raises on every UPDATE and on every DELETE except the retention purge, which marks its own
transaction (``SET LOCAL documind.audit_purge_before``) and can only remove rows older than that;
another (0003) raises on every TRUNCATE.
Rows hold no foreign keys that could cascade or be nulled: the tenant is a reference without a
database constraint (``DO_NOTHING``), the actor and the object are ids with a snapshot of their names,
so a deleted user, key or document leaves its rows intact. Never a secret or a code in a row:
:func:`audit.services.audit_record` drops such keys from ``details``.
"""

from __future__ import annotations

from django.db import models

from tenants.models import Tenant, TenantOwnedQuerySet


class AuditEvent(models.Model):
    """One action: who (actor), did what (action), to what (object), when, from where (IP, request id)."""

    class ActorType(models.TextChoices):
        USER = "user", "User"
        API_KEY = "api_key", "API key"
        OPERATOR = "operator", "Operator"
        ANONYMOUS = "anonymous", "Anonymous"
        SYSTEM = "system", "System"

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)  # e-mail or key name, kept after deletion
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_label = models.CharField(max_length=254, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    objects = TenantOwnedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="audit_event_tenant_created")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label or self.actor_type} {self.action}"
