"""How the console holds a session: the access token in the page's memory, the refresh token in a cookie.

The refresh token never reaches the page's JavaScript. The console's sign-in endpoints answer like
the API's but move the refresh token into an ``HttpOnly``, ``SameSite=Strict`` cookie whose path is
``/console/``; ``POST /console/auth/refresh`` (CSRF-protected) rotates it and hands the page a new
access token. The same cookie tells the server who opens a console page, so admin pages are refused
(403) by the server, not only hidden in the navigation.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services
from accounts.exceptions import InvalidToken
from accounts.models import User
from config.errors import DomainError
from tenants.models import Tenant

COOKIE_PATH = "/console/"
SUCCESSOR_KEY = "console:refresh-successor:{jti}"


class CsrfFailed(DomainError):
    status_code, code, default_message = 403, "permission_denied", "CSRF verification failed: reload the page."


def set_refresh_cookie(response: HttpResponseBase, refresh: str, *, request: HttpRequest) -> None:
    """Store ``refresh`` in the console's cookie for as long as the token lives."""
    response.set_cookie(
        settings.CONSOLE_REFRESH_COOKIE,
        refresh,
        max_age=int(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds()),
        path=COOKIE_PATH,
        secure=settings.CONSOLE_COOKIE_SECURE or request.is_secure(),
        httponly=True,
        samesite="Strict",
    )


def clear_refresh_cookie(response: HttpResponseBase) -> None:
    response.delete_cookie(settings.CONSOLE_REFRESH_COOKIE, path=COOKIE_PATH, samesite="Strict")


def refresh_cookie(request: HttpRequest) -> str:
    return request.COOKIES.get(settings.CONSOLE_REFRESH_COOKIE, "")


def enforce_csrf(request: HttpRequest) -> None:
    """Django's CSRF check (token header and, over HTTPS, the referer), for views DRF marks exempt."""

    def _ok(_request: HttpRequest) -> None:  # pragma: no cover - never called by process_view
        return None

    check = CsrfViewMiddleware(_ok)
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason is not None:
        raise CsrfFailed()


def cookie_user(request: HttpRequest) -> User | None:
    """The active user whose refresh token is in the console cookie (not rotated), or None.

    The token must be well signed, unexpired and not revoked, and its user and tenant active.
    """
    raw = refresh_cookie(request)
    if not raw:
        return None
    try:
        token = RefreshToken(raw)  # verifies the signature, expiry and blacklist
    except TokenError:
        # Rotated a moment ago by a refresh still in flight (a click during a page's load): the
        # successor speaks for the same session, unless it was revoked since.
        token = _grace_successor(raw)
        if token is None:
            return None
    user = User.objects.select_related("tenant").filter(pk=token.get("user_id")).first()
    if user is None or not user.is_active or user.tenant is None or not user.tenant.is_active:
        return None
    if str(token.get("tenant")) != str(user.tenant_id):
        return None
    return user


def _jti(raw: str) -> str | None:
    """The id of a well-signed, unexpired token (blacklisted or not), else None."""
    try:
        return str(token_backend.decode(raw, verify=True).get("jti") or "") or None
    except TokenError:
        return None


def _grace_successor(raw: str) -> RefreshToken | None:
    """The still-valid successor of ``raw`` when it was rotated within the grace window, else None."""
    jti = _jti(raw)
    successor = cache.get(SUCCESSOR_KEY.format(jti=jti)) if jti else None
    if not successor:
        return None
    try:
        return RefreshToken(successor)
    except TokenError:
        return None


def refresh_revoke(*, raw: str) -> None:
    """Sign out: revoke ``raw`` or, when it was rotated a moment ago, the successor that replaced it."""
    try:
        token = RefreshToken(raw)
    except TokenError:
        token = _grace_successor(raw)
        if token is None:
            return  # expired or revoked already: nothing left to end
    user = User.objects.filter(pk=token.get("user_id")).first()
    if user is not None:
        services.tokens_revoke(user=user, refresh=str(token))


def refresh_rotate(*, tenant: Tenant, raw: str) -> dict[str, str]:
    """Rotate ``raw`` (``accounts.services.tokens_refresh``), with a short grace for a lost answer.

    A page that navigates away while its refresh is in flight never stores the rotated cookie, and
    the next page presents the token that was just used. Within ``CONSOLE_REFRESH_GRACE_SECONDS`` of
    a rotation, that token gets the same successor back (as long as the successor is not revoked,
    e.g. by signing out) instead of a 401. Raises ``InvalidToken`` otherwise.
    """
    try:
        # One transaction: with the database cache, the successor is recorded when the old token's
        # blacklisting commits, so a page request in between never finds it revoked without a successor.
        with transaction.atomic():
            tokens = services.tokens_refresh(tenant=tenant, refresh=raw)
            jti = _jti(raw)
            if jti and settings.CONSOLE_REFRESH_GRACE_SECONDS > 0:
                cache.set(SUCCESSOR_KEY.format(jti=jti), tokens["refresh"], settings.CONSOLE_REFRESH_GRACE_SECONDS)
    except InvalidToken:
        token = _grace_successor(raw)
        if token is None:
            raise
        return {"refresh": str(token), "access": str(token.access_token)}
    return tokens
