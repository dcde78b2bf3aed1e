"""Django admin for chat sessions and messages (read-mostly: operators inspect, users write)."""

from __future__ import annotations

from django.contrib import admin

from chat.models import ChatSession, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "role", "status", "model", "content", "prompt_tokens", "completion_tokens", "ttft_ms"]
    readonly_fields = fields
    ordering = ["created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ["title", "tenant", "user", "model", "project", "updated_at"]
    list_filter = ["tenant", "model"]
    search_fields = ["title", "user__email"]
    readonly_fields = ["id", "tenant", "user", "created_at", "updated_at"]
    raw_id_fields = ["project"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "tenant",
        "session",
        "role",
        "status",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "total_ms",
        "created_at",
    ]
    list_filter = ["status", "role", "model", "tenant"]
    search_fields = ["content", "session__title"]
    readonly_fields = [
        "id",
        "tenant",
        "session",
        "role",
        "created_at",
        "updated_at",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "total_ms",
        "model",
        "citations",
        "error",
    ]
