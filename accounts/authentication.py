"""JWT authentication that binds a token to its tenant.

Tokens carry ``user_id``, ``tenant`` (id) and ``role``. A token presented with another tenant's
``X-Tenant-ID``, for an inactive user or tenant, or malformed, expired or blacklisted, is a 401
``authentication_failed``.
"""

from __future__ import annotations

from typing import Any

import structlog
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.models import User


def tokens_for_user(user: User) -> dict[str, str]:
    """A fresh refresh/access pair whose claims carry the user, tenant and role."""
    refresh = RefreshToken.for_user(user)
    refresh["tenant"] = str(user.tenant_id) if user.tenant_id else None
    refresh["role"] = user.role
    access = refresh.access_token
    return {"access": str(access), "refresh": str(refresh)}


def user_from_access_token(raw: str) -> User:
    """The active user of a valid access token, with its active tenant; raises ``AuthenticationFailed``."""
    try:
        token = AccessToken(raw)
    except TokenError as exc:
        raise AuthenticationFailed("The token is invalid or expired.", code="token_not_valid") from exc
    user = User.objects.select_related("tenant").filter(pk=token.get("user_id")).first()
    if user is None or not user.is_active:
        raise AuthenticationFailed("The user is inactive or does not exist.", code="user_inactive")
    if user.tenant is None or str(user.tenant_id) != str(token.get("tenant")):
        raise AuthenticationFailed("The token does not belong to a tenant.", code="token_not_valid")
    if not user.tenant.is_active:
        raise AuthenticationFailed("The tenant is inactive.", code="tenant_inactive")
    return user


class TenantJWTAuthentication(JWTAuthentication):
    """Bearer JWT whose ``tenant`` claim must match ``request.tenant``."""

    def authenticate(self, request: Request) -> tuple[User, Any] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            raise AuthenticationFailed("The Authorization header is malformed.", code="bad_authorization_header")
        try:
            user = user_from_access_token(raw.decode() if isinstance(raw, bytes) else raw)
        except (InvalidToken, TokenError) as exc:
            raise AuthenticationFailed("The token is invalid or expired.") from exc
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.pk != user.tenant_id:
            raise AuthenticationFailed("The token belongs to another tenant.", code="tenant_mismatch")
        structlog.contextvars.bind_contextvars(user_id=str(user.pk))
        return user, raw
