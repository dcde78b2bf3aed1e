"""Chat sessions and their messages."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenants.models import TenantOwnedModel


class ChatSession(TenantOwnedModel):
    """One conversation of one user. Private to that user: tenant admins do not see it either.

    ``project`` and ``document_ids`` narrow retrieval (empty: all the tenant's ready documents);
    ``model`` is the chat model the answers use (empty: the tenant's default).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    title = models.CharField(max_length=200, blank=True)
    project = models.ForeignKey(
        "documents.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="chat_sessions"
    )
    document_ids = models.JSONField(default=list, blank=True)
    model = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["tenant", "user", "-updated_at"], name="chat_session_user_recent")]

    def __str__(self) -> str:
        return self.title or str(self.pk)


class Message(TenantOwnedModel):
    """A question (``user``) or an answer (``assistant``) in a session.

    Answers move through a small state machine, saved progressively while they stream::

        streaming -> completed | cancelled | failed

    ``citations`` lists the sources the answer actually cited:
    ``[{n, chunk_id, document_id, document_title, page_start, page_end, snippet, source, ocr_confidence}]``
    (``source``: ``text`` or ``ocr``, where the cited chunk's text came from; ``ocr_confidence``: the
    lowest OCR confidence of its scanned pages, null for the text layer).
    ``error`` holds ``{"type", "message"}`` when the answer failed.
    """

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    citations = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETED)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=100, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    total_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["session", "created_at"], name="chat_message_session_time")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
