"""``Authorization: Api-Key <key>``: a machine acting through its key's service-account user.

The key implies its tenant: without ``X-Tenant-ID`` the tenant middleware takes the key's, and a
disagreeing ``X-Tenant-ID`` is refused (401 ``tenant_mismatch``). Scopes are checked here, once
the view is known, for every endpoint (:mod:`integrations.scopes`, failing closed): a missing scope
is 403 ``insufficient_scope``. ``request.auth`` is the :class:`~integrations.models.APIKey`.
"""

from __future__ import annotations

from typing import Any

import structlog
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request

from integrations.keys import HEADER_PREFIX, api_key_touch, api_key_verify, key_from_authorization
from integrations.models import APIKey
from integrations.scopes import key_allows, required_scope


class InsufficientScope(PermissionDenied):
    default_code = "insufficient_scope"
    envelope_code = "insufficient_scope"  # config.errors uses it as the envelope's type


def request_api_key(request: Any) -> APIKey | None:
    """The key that authenticated ``request`` (a DRF or Django request), or None."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, APIKey):
        return auth
    return getattr(getattr(request, "_request", request), "api_key", None)


def verified_key_for(django_request: Any, raw: str) -> APIKey:
    """Verify ``raw`` once per request (the tenant middleware may already have done it)."""
    cached = getattr(django_request, "api_key", None)
    if isinstance(cached, APIKey):
        return cached
    key = api_key_verify(raw)
    django_request.api_key = key
    return key


class APIKeyAuthentication(BaseAuthentication):
    """DRF authentication for API keys; then the endpoint's scope (see :mod:`integrations.scopes`)."""

    keyword = HEADER_PREFIX.strip()

    def authenticate(self, request: Request) -> tuple[Any, APIKey] | None:
        raw = key_from_authorization(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None:
            return None
        key = verified_key_for(request._request, raw)
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.pk != key.tenant_id:
            raise AuthenticationFailed("The API key belongs to another tenant.", code="tenant_mismatch")
        view = (getattr(request, "parser_context", None) or {}).get("view")
        scope = required_scope(view, request.method or "GET")
        if not key_allows(key, scope):
            detail = (
                "API keys cannot use this endpoint."
                if scope is None
                else f"This API key lacks the '{scope}' scope for this request."
            )
            raise InsufficientScope(detail)
        api_key_touch(key)
        structlog.contextvars.bind_contextvars(user_id=str(key.user_id), api_key=key.prefix)
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
