"""Reads about API keys and webhooks. Every selector takes the tenant explicitly."""

from __future__ import annotations

from django.db.models import QuerySet

from integrations.models import APIKey
from tenants.models import Tenant


def api_key_list(*, tenant: Tenant | None) -> QuerySet[APIKey]:
    """The tenant's keys, newest first (revoked ones included, for the record)."""
    return APIKey.objects.for_tenant(tenant).select_related("created_by").order_by("-created_at")
