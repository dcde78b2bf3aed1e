"""Reads about tenants: lookup by slug or id, listings for operators, the settings in force."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet

from tenants.models import Tenant


def tenant_get(*, identifier: str) -> Tenant | None:
    """The tenant named by ``identifier`` (its UUID or its slug, case-insensitive), active or not."""
    value = (identifier or "").strip()
    if not value:
        return None
    try:
        return Tenant.objects.filter(id=uuid.UUID(value)).first()
    except ValueError:
        return Tenant.objects.filter(slug=value.lower()).first()


def tenant_list(*, is_active: bool | None = None) -> QuerySet[Tenant]:
    """Tenants ordered by slug, each annotated with ``user_count`` and ``active_user_count``."""
    queryset = Tenant.objects.annotate(
        user_count=Count("users", distinct=True),
        active_user_count=Count("users", filter=Q(users__is_active=True), distinct=True),
    ).order_by("slug")
    if is_active is not None:
        queryset = queryset.filter(is_active=is_active)
    return queryset


def tenant_effective_settings(*, tenant: Tenant) -> dict[str, Any]:
    """The tenant's settings with the deployment's defaults filled in for every missing key.

    This is what the rest of the product reads: chat takes the models, prompt and language from here,
    quotas the two limits, sign-in ``signup_allowed`` (closed unless the tenant opens it).
    """
    allowed = list(tenant.setting("allowed_models") or settings.CHAT_ALLOWED_MODELS)
    default_model = tenant.setting("default_model")
    if default_model is None:
        default_model = (
            settings.CHAT_MODEL if settings.CHAT_MODEL in allowed else (allowed[0] if allowed else settings.CHAT_MODEL)
        )
    return {
        "allowed_models": allowed,
        "default_model": default_model,
        "system_prompt": tenant.setting("system_prompt", ""),
        "answer_language": tenant.setting("answer_language", "auto"),
        "signup_allowed": bool(tenant.setting("signup_allowed", False)),
        "daily_token_quota": int(tenant.setting("daily_token_quota", settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA)),
        "user_daily_token_quota": int(
            tenant.setting("user_daily_token_quota", settings.DEFAULT_USER_DAILY_TOKEN_QUOTA)
        ),
    }


def tenant_signup_allowed(*, tenant: Tenant) -> bool:
    """Whether an unknown e-mail address may create an account in ``tenant``."""
    return bool(tenant.setting("signup_allowed", False))
