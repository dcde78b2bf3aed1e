"""Operators read every tenant's audit log; nobody adds, changes or deletes rows here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "tenant_id",
        "actor_type",
        "actor_label",
        "action",
        "object_type",
        "object_label",
        "ip",
    )
    list_filter = ("actor_type", "action", "created_at")
    search_fields = ("action", "actor_label", "object_label", "object_id", "request_id", "ip")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = None  # no bulk delete

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
