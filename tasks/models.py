"""The task ledger: background work the system does for people, and their own to-dos."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from tenants.models import TenantOwnedModel


class Task(TenantOwnedModel):
    """A background task (document ingestion, ...) or a person's to-do.

    For background work this row is the one record of the run: status, progress, stage, error and
    per-stage ``timings`` (seconds). ``celery_task_name`` names the Celery task that runs it (looked up
    in Celery's own registry, ``app.tasks[name]``, to run it again); ``payload`` holds its keyword
    arguments. ``kind`` only labels the row for people (lists, filters).

    State machine (enforced by :meth:`can_transition`)::

        pending    -> processing | completed | cancelled | failed
        processing -> completed | failed | cancelled | pending (retry scheduled by Celery)
        failed     -> pending (retry: a new attempt)
        cancelled  -> pending (retry: a new attempt)
        completed  -> pending (to-dos only: reopened)
    """

    class Kind(models.TextChoices):
        TODO = "todo", "To-do"
        DOCUMENT_INGESTION = "document_ingestion", "Document ingestion"
        REEMBEDDING = "reembedding", "Re-embedding"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    TRANSITIONS: ClassVar[dict[str, set[str]]] = {
        Status.PENDING: {Status.PROCESSING, Status.COMPLETED, Status.CANCELLED, Status.FAILED},
        Status.PROCESSING: {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.PENDING},
        Status.FAILED: {Status.PENDING},
        Status.CANCELLED: {Status.PENDING},
        Status.COMPLETED: {Status.PENDING},
    }
    TERMINAL: ClassVar[set[str]] = {Status.COMPLETED, Status.FAILED, Status.CANCELLED}

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=40, choices=Kind.choices, default=Kind.TODO)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=40, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.JSONField(default=dict, blank=True)  # {"type": ..., "message": ...}
    celery_task_id = models.CharField(max_length=255, blank=True, db_index=True)
    # The registered name of the Celery task that runs this row (e.g. "documents.ingest"); empty for to-dos.
    celery_task_name = models.CharField(max_length=200, blank=True)
    # Seconds spent in each stage of the run, e.g. {"extracting": 1.2, "embedding": 3.4}.
    timings = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # What the background task works on, e.g. {"document_id": "..."}: enough to run it again.
    payload = models.JSONField(default=dict, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "owner", "status"], name="tasks_task_owner_status"),
            models.Index(fields=["status", "heartbeat_at"], name="tasks_task_status_heartbeat"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(progress__lte=100), name="tasks_task_progress_lte_100"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.title} [{self.status}]"

    @property
    def is_background(self) -> bool:
        return self.kind != self.Kind.TODO

    @classmethod
    def can_transition(cls, old: str, new: str) -> bool:
        return old == new or new in cls.TRANSITIONS.get(old, set())
