"""Which API key scope each endpoint needs: one table, failing closed.

Every DRF view an API key reaches is looked up here by its dotted class name. ``(read, write)``
gives the scope for safe methods and for the others; ``None`` in a slot means keys may not do that
at all (403 ``insufficient_scope``). A view missing from the table refuses keys: a new endpoint is
closed to machines until someone decides its scope here. ``tests/integrations/test_scopes.py``
checks that every routed API view is listed, so the decision is made explicitly.

Scopes do not imply one another: ``admin`` manages the tenant (users, settings, webhooks, audit log,
everyone's usage); a key that also reads documents needs ``documents:read``.
"""

from __future__ import annotations

from typing import Any

from integrations.models import Scope

ANY = "*"  # any valid key may use it (its own profile, its own usage)

READ, WRITE = Scope.DOCUMENTS_READ.value, Scope.DOCUMENTS_WRITE.value

ENDPOINT_SCOPES: dict[str, tuple[str | None, str | None]] = {
    # documents and their projects, and the task ledger (ingestion tasks, to-dos)
    "documents.views.ProjectViewSet": (READ, WRITE),
    "documents.views.DocumentViewSet": (READ, WRITE),
    "tasks.views.TaskViewSet": (READ, WRITE),
    "documents.views.SearchViewSet": (Scope.SEARCH.value, Scope.SEARCH.value),
    "chat.views.ChatSessionViewSet": (Scope.CHAT.value, Scope.CHAT.value),
    # the tenant
    "tenants.views.TenantView": (ANY, Scope.ADMIN.value),
    "tenants.usage_views.UsageView": (ANY, None),
    "accounts.views.UserViewSet": (Scope.ADMIN.value, Scope.ADMIN.value),
    "accounts.views.MeView": (ANY, None),
    # a key is not a person: no password, no refresh tokens
    "accounts.views.LogoutView": (None, None),
    "accounts.views.LogoutAllView": (None, None),
    "accounts.views.PasswordChangeView": (None, None),
    # keys manage nothing about keys (an admin key cannot mint keys); they may list them
    "integrations.views.APIKeyViewSet": (Scope.ADMIN.value, None),
    "integrations.views.WebhookEndpointViewSet": (Scope.ADMIN.value, Scope.ADMIN.value),
    "audit.views.AuditEventViewSet": (Scope.ADMIN.value, None),
    # the public API description, whoever asks
    "drf_spectacular.views.SpectacularAPIView": (ANY, None),
    "drf_spectacular.views.SpectacularSwaggerView": (ANY, None),
    "drf_spectacular.views.SpectacularRedocView": (ANY, None),
}

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def view_name(view: Any) -> str:
    klass = type(view)
    return f"{klass.__module__}.{klass.__qualname__}"


def required_scope(view: Any, method: str) -> str | None:
    """The scope a key needs for ``method`` on ``view``: a scope, ``ANY``, or None (keys refused)."""
    rule = ENDPOINT_SCOPES.get(view_name(view))
    if rule is None:
        return None
    read, write = rule
    return read if method.upper() in SAFE_METHODS else write


def key_allows(key: Any, scope: str | None) -> bool:
    if scope is None:
        return False
    return scope == ANY or key.has_scope(scope)
