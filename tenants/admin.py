"""Operators' admin for tenants (search, filters, activate/deactivate) and the read-only usage ledger."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from rest_framework import serializers

from tenants.models import Tenant, UsageRecord
from tenants.selectors import tenant_list
from tenants.serializers import clean_tenant_settings
from tenants.services import tenant_set_active, validate_tenant_slug


class TenantAdminForm(forms.ModelForm):
    """Validates ``settings`` with the same serializer as the API and the slug like ``create_tenant``."""

    class Meta:
        model = Tenant
        fields = ["slug", "name", "is_active", "settings"]
        help_texts = {
            "settings": "JSON object. Keys: allowed_models, default_model, system_prompt, answer_language, "
            "signup_allowed, daily_token_quota, user_daily_token_quota.",
        }

    def clean_slug(self) -> str:
        from config.errors import ValidationFailed

        slug = (self.cleaned_data.get("slug") or "").strip()
        try:
            return validate_tenant_slug(slug)
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean_settings(self) -> dict[str, Any]:
        value = self.cleaned_data.get("settings") or {}
        # The embedder is not edited here (a switch re-embeds every chunk: the "Re-embed" action);
        # the stored one is kept, and a new tenant gets the deployment's default.
        stored = (self.instance.settings or {}).get("embedder") if self.instance.pk else None
        if isinstance(value, dict) and "embedder" in value:
            value = dict(value)
            if value.pop("embedder") != stored and self.instance.pk:
                raise forms.ValidationError("embedder: change it with the tenant list's re-embed action.")
        try:
            cleaned = clean_tenant_settings(value, current={})
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"settings": exc.detail}
            raise forms.ValidationError(
                [
                    f"{key}: {' '.join(str(m) for m in msgs) if isinstance(msgs, list) else msgs}"
                    for key, msgs in detail.items()
                ]
            ) from exc
        if stored:
            cleaned["embedder"] = stored
        elif not self.instance.pk:
            from documents.embeddings import default_provider

            cleaned["embedder"] = default_provider()
        return cleaned


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ["slug", "name", "is_active", "users_link", "created_at"]
    list_display_links = ["slug", "name"]
    list_filter = ["is_active", "created_at"]
    search_fields = ["slug", "name", "=id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    fields = ["id", "slug", "name", "is_active", "settings", "created_at", "updated_at"]
    ordering = ["slug"]
    actions = ["activate", "deactivate", "reembed_local", "reembed_openai", "reembed_hashing"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return tenant_list()

    @admin.display(description="users", ordering="user_count")
    def users_link(self, tenant: Tenant) -> str:
        url = reverse("admin:accounts_user_changelist") + f"?tenant__id__exact={tenant.pk}"
        return format_html('<a href="{}">{} ({} active)</a>', url, tenant.user_count, tenant.active_user_count)

    @admin.action(description="Activate the selected tenants")
    def activate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = sum(tenant_set_active(tenant=t, active=True) for t in queryset)
        self.message_user(request, f"Activated {changed} tenant(s).", messages.SUCCESS)

    @admin.action(description="Deactivate the selected tenants (their API answers 403 tenant_inactive)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = sum(tenant_set_active(tenant=t, active=False) for t in queryset)
        self.message_user(request, f"Deactivated {changed} tenant(s).", messages.SUCCESS)

    def _reembed(self, request: HttpRequest, queryset: QuerySet[Tenant], embedder: str) -> None:
        """Queue a re-embedding per tenant (old vectors answer until each switches; see documents.reembedding)."""
        from config.errors import DomainError
        from documents.reembedding import reembed_start

        for tenant in queryset:
            try:
                task = reembed_start(tenant=tenant, embedder=embedder)
            except DomainError as exc:
                self.message_user(request, f"{tenant.slug}: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{tenant.slug}: re-embedding with {embedder} queued (task {task.pk}).", messages.SUCCESS
                )

    @admin.action(description="Re-embed with the local embedder (MiniLM, offline), then switch")
    def reembed_local(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._reembed(request, queryset, "local")

    @admin.action(description="Re-embed with the OpenAI embedder, then switch")
    def reembed_openai(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._reembed(request, queryset, "openai")

    @admin.action(description="Re-embed with the hashing embedder (lexical), then switch")
    def reembed_hashing(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._reembed(request, queryset, "hashing")


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The metering ledger: read-only, it is written by chat and ingestion only."""

    list_display = [
        "created_at",
        "tenant",
        "user",
        "kind",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "embedding_tokens",
    ]
    list_filter = ["kind", "tenant", "created_at"]
    search_fields = ["tenant__slug", "user__email", "model"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant", "user"]
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
