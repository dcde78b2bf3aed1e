"""Tenant serializers, including the validator of ``Tenant.settings``.

:class:`TenantSettingsSerializer` is the single place that decides what a tenant's settings may
hold. The API (``PATCH /api/v1/tenant/``), the admin form and ``create_tenant`` all go through
:func:`clean_tenant_settings`, so nothing else writes unvalidated settings.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings as django_settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from tenants.models import Tenant
from tenants.selectors import tenant_effective_settings

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,99}$")
# "auto" (answer in the question's language) or a BCP 47 language tag such as "en", "de", "pt-BR".
LANGUAGE_RE = re.compile(r"^(auto|[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3})$")
MAX_SYSTEM_PROMPT_CHARS = 4000
MAX_QUOTA = 10**12


class StrictCharField(serializers.CharField):
    """A JSON string: no coercion of numbers or booleans into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON ``true``/``false`` only (not "yes", 1 or "on")."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only (not "100", 1.0 or true)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class TenantSettingsSerializer(serializers.Serializer):
    """Validates a (partial) ``Tenant.settings`` document.

    Every key is optional; ``null`` removes a key so its default applies again. Unknown keys are
    rejected. ``context["current"]`` holds the stored settings, so cross-key rules (the default model
    must be allowed, a user's quota cannot exceed the tenant's) are checked on the merged result.
    """

    allowed_models = serializers.ListField(
        child=StrictCharField(max_length=100),
        allow_empty=False,
        max_length=50,
        required=False,
        allow_null=True,
        help_text="Chat models this tenant may use; a subset of the deployment's CHAT_ALLOWED_MODELS.",
    )
    default_model = StrictCharField(
        max_length=100,
        required=False,
        allow_null=True,
        help_text="The chat model used when a request names none; must be allowed.",
    )
    system_prompt = StrictCharField(
        max_length=MAX_SYSTEM_PROMPT_CHARS,
        required=False,
        allow_blank=True,
        allow_null=True,
        trim_whitespace=False,
        help_text="Extra instructions prepended to every chat answer.",
    )
    answer_language = StrictCharField(
        max_length=35,
        required=False,
        allow_null=True,
        help_text='"auto" or a BCP 47 language tag ("en", "de", "pt-BR").',
    )
    signup_allowed = StrictBooleanField(
        required=False, allow_null=True, help_text="Whether unknown e-mail addresses may create accounts."
    )
    daily_token_quota = StrictIntegerField(
        min_value=0,
        max_value=MAX_QUOTA,
        required=False,
        allow_null=True,
        help_text="Tokens the whole tenant may use per 24 hours.",
    )
    user_daily_token_quota = StrictIntegerField(
        min_value=0,
        max_value=MAX_QUOTA,
        required=False,
        allow_null=True,
        help_text="Tokens one user may use per 24 hours.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Settings must be a JSON object."]})
        if "embedder" in data:
            raise serializers.ValidationError(
                {
                    "embedder": [
                        "Read-only here: switching embedders re-embeds every chunk; operators do it with "
                        "`manage.py reembed` or the admin's re-embed action."
                    ]
                }
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({key: ["Unknown setting."] for key in unknown})
        return super().to_internal_value(data)

    def validate_allowed_models(self, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [name for name in value if not MODEL_NAME_RE.match(name)]
        if bad:
            raise serializers.ValidationError(f"Not a model name: {', '.join(bad)}.")
        if len(set(value)) != len(value):
            raise serializers.ValidationError("Models must not repeat.")
        permitted = set(django_settings.CHAT_ALLOWED_MODELS)
        outside = [name for name in value if name not in permitted]
        if outside:
            raise serializers.ValidationError(
                f"Not enabled on this deployment: {', '.join(outside)} (CHAT_ALLOWED_MODELS: "
                f"{', '.join(django_settings.CHAT_ALLOWED_MODELS)})."
            )
        return value

    def validate_answer_language(self, value: str | None) -> str | None:
        if value is not None and not LANGUAGE_RE.match(value):
            raise serializers.ValidationError('Use "auto" or a language tag such as "en", "de" or "pt-BR".')
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        merged = merge_settings(self.context.get("current") or {}, attrs)
        allowed = merged.get("allowed_models") or list(django_settings.CHAT_ALLOWED_MODELS)
        default = merged.get("default_model")
        if default is not None and default not in allowed:
            field = "default_model" if "default_model" in attrs else "allowed_models"
            raise serializers.ValidationError(
                {field: [f"The default model {default!r} is not among the allowed models."]}
            )
        tenant_quota, user_quota = merged.get("daily_token_quota"), merged.get("user_daily_token_quota")
        if tenant_quota is not None and user_quota is not None and user_quota > tenant_quota:
            raise serializers.ValidationError(
                {"user_daily_token_quota": ["A user's quota cannot exceed the tenant's daily_token_quota."]}
            )
        return attrs


def merge_settings(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` applied; a ``None`` value removes the key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def clean_tenant_settings(changes: Any, *, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``changes`` against ``current`` and return the merged settings to store.

    Raises ``rest_framework.serializers.ValidationError`` with per-key messages.
    """
    serializer = TenantSettingsSerializer(data=changes, context={"current": current or {}})
    serializer.is_valid(raise_exception=True)
    return merge_settings(current or {}, serializer.validated_data)


class EffectiveSettingsSerializer(serializers.Serializer):
    """The settings in force: stored values with the deployment's defaults filled in."""

    allowed_models = serializers.ListField(child=serializers.CharField())
    default_model = serializers.CharField()
    system_prompt = serializers.CharField(allow_blank=True)
    answer_language = serializers.CharField()
    signup_allowed = serializers.BooleanField()
    daily_token_quota = serializers.IntegerField()
    user_daily_token_quota = serializers.IntegerField()
    embedder = serializers.CharField(help_text="local, openai or hashing; changed by re-embedding (operators).")


class TenantSerializer(serializers.ModelSerializer):
    """A tenant as its users see it."""

    settings = serializers.SerializerMethodField()
    effective_settings = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "is_active", "settings", "effective_settings", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field(TenantSettingsSerializer)
    def get_settings(self, tenant: Tenant) -> dict[str, Any]:
        return dict(tenant.settings or {})

    @extend_schema_field(EffectiveSettingsSerializer)
    def get_effective_settings(self, tenant: Tenant) -> dict[str, Any]:
        return tenant_effective_settings(tenant=tenant)


class TenantUpdateSerializer(serializers.Serializer):
    """``PATCH /api/v1/tenant/``: the name and/or some settings (merged into the stored ones).

    Pass the stored settings as ``context["current"]`` so the nested settings are checked against them.
    """

    name = serializers.CharField(max_length=200, required=False)
    settings = TenantSettingsSerializer(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # Reject what cannot be patched (slug, is_active...) instead of silently ignoring it.
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["This field cannot be changed here."] for key in unknown})
        return super().to_internal_value(data)
