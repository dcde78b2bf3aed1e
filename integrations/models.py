"""API keys for machines, and (below) webhook endpoints with their deliveries.

An :class:`APIKey` acts through its own service-account user (``User.is_service_account``): a user
of the key's tenant with no password, who cannot sign in, whose role follows the key's scopes. What
the key creates (documents, tasks, chats) is owned by that user; quotas and rate limits count per key.
Only a SHA-256 of the secret is stored; ``prefix`` finds the row (see :mod:`integrations.keys`).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from integrations.encryption import EncryptedSecretField
from tenants.models import TenantOwnedModel


class Scope(models.TextChoices):
    DOCUMENTS_READ = "documents:read", "Read documents, projects and tasks"
    DOCUMENTS_WRITE = "documents:write", "Upload, change and delete documents, projects and tasks"
    SEARCH = "search", "Search"
    CHAT = "chat", "Chat"
    ADMIN = "admin", "Tenant administration (users, settings, webhooks, audit log)"


class APIKey(TenantOwnedModel):
    """A tenant's key for a program. Revoked or expired keys stop working at once (401).

    States: active → revoked (``revoked_at`` set, final) or expired (``expires_at`` passed).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = ArrayField(models.CharField(max_length=32, choices=Scope.choices))
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_key")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    daily_token_quota = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="integrations_apikey_unique_tenant_name"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    is_api_key = True  # duck-typed marker for code that must not import this app (rate limits, quotas)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_usable(self) -> bool:
        return not self.is_revoked and not self.is_expired

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class WebhookEvent(models.TextChoices):
    DOCUMENT_READY = "document.ready", "A document finished ingesting"
    DOCUMENT_FAILED = "document.failed", "A document's ingestion failed"
    CHAT_MESSAGE_COMPLETED = "chat.message.completed", "A chat answer completed"
    USAGE_QUOTA_REACHED = "usage.quota_reached", "A daily token quota was reached"
    API_KEY_CREATED = "api_key.created", "An API key was created"
    WEBHOOK_DISABLED = "webhook.disabled", "An endpoint was disabled after failing repeatedly"


class WebhookEndpoint(TenantOwnedModel):
    """Where a tenant wants events POSTed, signed with ``secret`` (Standard Webhooks, ``whsec_`` base64).

    States: active → disabled (by its admin, or automatically after
    ``WEBHOOK_DISABLE_AFTER_FAILURES`` deliveries in a row that failed every attempt); re-enabling
    resets the failure count. The secret must be kept to sign, so it is stored encrypted
    (:mod:`integrations.encryption`); it is shown once, at creation or rotation.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = ArrayField(models.CharField(max_length=64, choices=WebhookEvent.choices))
    secret = EncryptedSecretField()
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(TenantOwnedModel):
    """One event for one endpoint, and how sending it went.

    States: pending → succeeded (a 2xx) | retrying (an attempt failed, another is scheduled with
    exponential backoff) → ... → failed (``WEBHOOK_MAX_ATTEMPTS`` attempts failed, or the URL is
    refused). A redelivery is a new row with the same ``message_id`` (the ``webhook-id`` header, so
    receivers can de-duplicate).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    message_id = models.CharField(max_length=64, db_index=True)
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    redelivery_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["endpoint", "-created_at"], name="integrations_delivery_recent")]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"
