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
