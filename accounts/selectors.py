"""Reads about users. Every selector takes the tenant explicitly; no tenant means nothing."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from tenants.models import Tenant


def normalize_email(email: str) -> str:
    """E-mail addresses are compared trimmed and lower-cased everywhere."""
    return (email or "").strip().lower()


def user_get_by_email(*, tenant: Tenant | None, email: str) -> User | None:
    """The person of ``tenant`` with ``email`` (active or not), or None. API keys' accounts are not people."""
    return (
        User.objects.for_tenant(tenant)
        .filter(email=normalize_email(email), is_service_account=False)
        .select_related("tenant")
        .first()
    )


def tenant_active_admins(*, tenant: Tenant | None) -> QuerySet[User]:
    """The active admins of ``tenant`` (people: an ``admin`` API key does not keep a tenant administered)."""
    return User.objects.for_tenant(tenant).filter(role=User.Role.ADMIN, is_active=True, is_service_account=False)
