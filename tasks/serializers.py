"""Task API shapes: one output serializer, separate inputs for creating and changing to-dos."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tasks.models import Task
from tasks.services import TODO_STATUSES


class TaskErrorSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="snake_case code, e.g. `stalled`, `pdf_encrypted`.")
    message = serializers.CharField()


class TaskSerializer(serializers.ModelSerializer):
    """A task as the API shows it (read-only)."""

    id = serializers.CharField(read_only=True, help_text="The task's id (a string, as `task_id` in events).")
    owner = serializers.UUIDField(source="owner_id", read_only=True)
    is_background = serializers.BooleanField(read_only=True)
    error = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "kind",
            "is_background",
            "title",
            "description",
            "status",
            "progress",
            "stage",
            "result",
            "error",
            "payload",
            "attempts",
            "owner",
            "due_at",
            "completed_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(TaskErrorSerializer(allow_null=True))
    def get_error(self, task: Task) -> dict[str, Any] | None:
        return task.error or None


class TodoCreateSerializer(serializers.Serializer):
    """POST /tasks/: a new to-do (background tasks are started by the system, not here)."""

    kind = serializers.ChoiceField(
        choices=[Task.Kind.TODO],
        default=Task.Kind.TODO,
        required=False,
        error_messages={
            "invalid_choice": "Only to-do tasks can be created here; background tasks are started by the system."
        },
    )
    title = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)
    due_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class TodoUpdateSerializer(serializers.Serializer):
    """PUT/PATCH /tasks/{id}/: change a to-do. ``status`` moves through the state machine (else 409)."""

    title = serializers.CharField(max_length=255)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    due_at = serializers.DateTimeField(required=False, allow_null=True)
    status = serializers.ChoiceField(
        choices=[(s.value, s.label) for s in TODO_STATUSES],
        required=False,
        help_text="pending, processing (in progress), completed or cancelled; `failed` is for background tasks.",
    )
