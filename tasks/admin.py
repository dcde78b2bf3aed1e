"""Django admin for the task ledger: filter by kind/status/tenant, search, cancel or retry in bulk."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.errors import Conflict
from tasks import services
from tasks.models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "status", "progress", "stage", "owner", "tenant", "attempts", "created_at")
    list_filter = ("kind", "status", "tenant")
    search_fields = ("title", "description", "celery_task_id", "owner__email", "tenant__slug")
    list_select_related = ("owner", "tenant")
    raw_id_fields = ("owner",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "celery_task_id",
        "celery_task_name",
        "timings",
        "attempts",
        "progress",
        "stage",
        "result",
        "error",
        "payload",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "completed_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("tenant", "owner", "kind", "title", "description", "status", "due_at")}),
        ("Progress", {"fields": ("progress", "stage", "timings", "result", "error", "payload")}),
        (
            "Bookkeeping",
            {
                "fields": (
                    "celery_task_id",
                    "celery_task_name",
                    "attempts",
                    "started_at",
                    "heartbeat_at",
                    "finished_at",
                    "completed_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    actions = ("cancel_tasks", "retry_tasks")

    def _run(self, request: HttpRequest, queryset: QuerySet[Task], service: object, verb: str) -> None:
        done, refused = 0, []
        for task in queryset:
            try:
                service(task=task)  # type: ignore[operator]
                done += 1
            except Conflict as exc:
                refused.append(f"{task.title}: {exc.message}")
        if done:
            self.message_user(request, f"{done} task(s) {verb}.", messages.SUCCESS)
        for line in refused[:10]:
            self.message_user(request, line, messages.WARNING)

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._run(request, queryset, services.task_cancel, "cancelled")

    @admin.action(description="Retry selected failed/cancelled background tasks")
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self._run(request, queryset, services.task_retry, "queued again")
