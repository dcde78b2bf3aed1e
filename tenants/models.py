"""Tenants (organisations) and their usage ledger."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models


def default_tenant_settings() -> dict[str, Any]:
    return {}


class Tenant(models.Model):
    """An organisation. Everything a tenant owns carries a foreign key to it.

    ``settings`` is validated by :class:`tenants.serializers.TenantSettingsSerializer`: allowed chat
    models and the default, system prompt, answer language, sign-up allowed, daily token quotas.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    settings = models.JSONField(default=default_tenant_settings, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class TenantOwnedQuerySet(models.QuerySet):
    """QuerySet of tenant data that fails closed: ``for_tenant(None)`` is empty, never "all"."""

    def for_tenant(self, tenant: Tenant | None) -> TenantOwnedQuerySet:
        if tenant is None:
            return self.none()
        return self.filter(tenant=tenant)


class TenantOwnedModel(models.Model):
    """Abstract base of every model holding tenant data."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")

    objects = TenantOwnedQuerySet.as_manager()

    class Meta:
        abstract = True


class UsageRecord(TenantOwnedModel):
    """One metered call: a chat answer or an embedding request, with its token counts."""

    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDING = "embedding", "Embedding"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    embedding_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="tenants_usage_tenant_time"),
            models.Index(fields=["tenant", "user", "created_at"], name="tenants_usage_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.model} {self.total_tokens} tokens ({self.created_at:%Y-%m-%d %H:%M})"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens + self.embedding_tokens
