"""How the console holds a session: the access token in the page's memory, the refresh token in a cookie.

The refresh token never reaches the page's JavaScript. The console's sign-in endpoints answer like
the API's but move the refresh token into an ``HttpOnly``, ``SameSite=Strict`` cookie whose path is
``/console/``; ``POST /console/auth/refresh`` (CSRF-protected) rotates it and hands the page a new
access token. The same cookie tells the server who opens a console page, so admin pages are refused
(403) by the server, not only hidden in the navigation.
"""

from __future__ import annotations

import contextlib

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.state import token_backend

from accounts import services
from accounts.exceptions import InvalidToken
from accounts.models import User
from accounts.tokens import TokenRefused, refresh_session_user
from config.errors import DomainError
from tenants.models import Tenant

COOKIE_PATH = "/console/"


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
    """The user whose refresh token is in the console cookie (not rotated), or None when there is none
    or it is no longer honoured (:func:`accounts.tokens.refresh_session_user`)."""
    raw = refresh_cookie(request)
    if not raw:
        return None
    try:
        return refresh_session_user(raw)
    except TokenRefused:
        return None


def cookie_tenant(raw: str) -> Tenant:
    """The tenant a refresh token names (its signature and everything else are checked by the rotation)."""
    try:
        claim = token_backend.decode(raw, verify=False).get("tenant")
    except TokenBackendError as exc:
        raise InvalidToken() from exc
    tenant = Tenant.objects.filter(pk=claim, is_active=True).first() if claim else None
    if tenant is None:
        raise InvalidToken()
    return tenant


def refresh_revoke(*, raw: str) -> None:
    """Sign out: end the cookie's sign-in (its token family, so a successor rotated meanwhile too)."""
    try:
        user_id = token_backend.decode(raw, verify=True).get("user_id")
    except TokenBackendError:
        return  # expired or forged: nothing to end
    user = User.objects.filter(pk=user_id).first() if user_id else None
    if user is not None:
        with contextlib.suppress(InvalidToken):  # already ended
            services.tokens_revoke(user=user, refresh=raw)
