"""JWT authentication that binds a token to its tenant.

Tokens carry ``user_id``, ``tenant`` (id), ``role``, ``tv`` and ``fam`` (:mod:`accounts.tokens`). A
token presented with another tenant's ``X-Tenant-ID``, for an inactive user or tenant, malformed,
expired, or revoked (an older token version, a revoked sign-in) is a 401 ``authentication_failed``.
"""

from __future__ import annotations

from typing import Any

import structlog
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from accounts.models import User
from accounts.tokens import AccessSession, TokenRefused, access_session, tokens_for_user

__all__ = ["TenantJWTAuthentication", "session_from_access_token", "tokens_for_user", "user_from_access_token"]

REFUSALS = {
    "token_not_valid": "The token is invalid or expired.",
    "token_revoked": "The token has been revoked; sign in again.",
    "user_inactive": "The user is inactive or does not exist.",
    "tenant_inactive": "The tenant is inactive.",
}


def session_from_access_token(raw: str) -> AccessSession:
    """The session of a valid, unrevoked access token; raises ``AuthenticationFailed`` with the reason's code."""
    try:
        return access_session(raw)
    except TokenRefused as exc:
        raise AuthenticationFailed(REFUSALS.get(exc.reason, REFUSALS["token_not_valid"]), code=exc.reason) from exc


def user_from_access_token(raw: str) -> User:
    """The active user of a valid, unrevoked access token, with its active tenant."""
    return session_from_access_token(raw).user


# Authorization schemes another authentication class handles (integrations.authentication: API keys).
OTHER_SCHEMES = (b"Api-Key",)


class TenantJWTAuthentication(JWTAuthentication):
    """Bearer JWT whose ``tenant`` claim must match ``request.tenant``."""

    def authenticate(self, request: Request) -> tuple[User, Any] | None:
        header = self.get_header(request)
        if header is None or header.split(b" ", 1)[0] in OTHER_SCHEMES:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            raise AuthenticationFailed("The Authorization header is malformed.", code="bad_authorization_header")
        # The header reached here encoded as DRF reads headers (latin-1): decoded the same way, a token
        # with other bytes is refused as invalid rather than failing to decode (a 500).
        user = user_from_access_token(raw.decode(HTTP_HEADER_ENCODING) if isinstance(raw, bytes) else raw)
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.pk != user.tenant_id:
            raise AuthenticationFailed("The token belongs to another tenant.", code="tenant_mismatch")
        structlog.contextvars.bind_contextvars(user_id=str(user.pk))
        return user, raw
