"""Reads about tenants: lookup by slug or id, listings for operators, the settings in force."""

from __future__ import annotations

import uuid
from typing import Any, TypedDict

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


class TenantSettings(TypedDict):
    """A tenant's settings in force (:func:`tenant_effective_settings`)."""

    allowed_models: list[str]
    default_model: str
    system_prompt: str
    answer_language: str
    signup_allowed: bool
    daily_token_quota: int
    user_daily_token_quota: int
    embedder: str


def _non_negative_int(value: Any, default: int) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


def _default_model(stored: Any, allowed: list[str]) -> str:
    """The model a question gets when it names none: one that is allowed.

    The stored ``default_model`` when it is allowed, else ``CHAT_MODEL`` when it is, else the first
    allowed model (a stored default can fall off the list when the deployment's ``CHAT_ALLOWED_MODELS``
    changes after it was saved).
    """
    for candidate in (stored, settings.CHAT_MODEL):
        if candidate and str(candidate) in allowed:
            return str(candidate)
    return allowed[0] if allowed else settings.CHAT_MODEL


def tenant_effective_settings(*, tenant: Tenant) -> TenantSettings:
    """The tenant's settings with the deployment's defaults filled in: the one reader of them.

    Chat takes the models, prompt and language from here, quotas the two limits, sign-in
    ``signup_allowed`` (closed unless the tenant opens it), the tenant API shows it. A stored value
    that cannot be used (a quota that is not a number) reads as the default.
    """
    stored = tenant.settings or {}
    allowed = [str(model) for model in (stored.get("allowed_models") or settings.CHAT_ALLOWED_MODELS)]
    return {
        "allowed_models": allowed,
        "default_model": _default_model(stored.get("default_model"), allowed),
        "system_prompt": str(stored.get("system_prompt") or ""),
        "answer_language": str(stored.get("answer_language") or "auto"),
        "signup_allowed": bool(stored.get("signup_allowed") or False),
        "daily_token_quota": _non_negative_int(
            stored.get("daily_token_quota", settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA),
            settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA,
        ),
        "user_daily_token_quota": _non_negative_int(
            stored.get("user_daily_token_quota", settings.DEFAULT_USER_DAILY_TOKEN_QUOTA),
            settings.DEFAULT_USER_DAILY_TOKEN_QUOTA,
        ),
        "embedder": _embedder(stored.get("embedder")),
    }


def _embedder(stored: Any) -> str:
    """The embedder that answers the tenant's searches: the one it is pinned to (set at creation and by
    ``manage.py reembed``), else the deployment's default (``EMBEDDING_PROVIDER``)."""
    from documents.embeddings import PROVIDERS, default_provider

    name = str(stored or "").lower()
    return name if name in PROVIDERS else default_provider()


def tenant_signup_allowed(*, tenant: Tenant) -> bool:
    """Whether an unknown e-mail address may create an account in ``tenant``."""
    return tenant_effective_settings(tenant=tenant)["signup_allowed"]
