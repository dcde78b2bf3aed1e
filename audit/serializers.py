"""The audit log as tenant admins read it."""

from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    object = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "action", "actor", "object", "ip", "request_id", "details"]
        read_only_fields = fields

    def get_actor(self, obj: AuditEvent) -> dict[str, str | None]:
        return {"type": obj.actor_type, "id": obj.actor_id or None, "label": obj.actor_label}

    def get_object(self, obj: AuditEvent) -> dict[str, str | None] | None:
        if not obj.object_type:
            return None
        return {"type": obj.object_type, "id": obj.object_id or None, "label": obj.object_label}
