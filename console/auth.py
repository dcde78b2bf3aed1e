"""How the console holds a session: the access token in the page's memory, the refresh token in a cookie.

The refresh token never reaches the page's JavaScript. The console's sign-in endpoints answer like
the API's but move the refresh token into an ``HttpOnly``, ``SameSite=Strict`` cookie whose path is
``/console/``; ``POST /console/auth/refresh`` (CSRF-protected) rotates it and hands the page a new
access token. The same cookie tells the server who opens a console page, so admin pages are refused
(403) by the server, not only hidden in the navigation.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from config.errors import DomainError

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
    """The active user whose refresh token is in the console cookie (not rotated), or None.

    The token must be well signed, unexpired and not revoked, and its user and tenant active.
    """
    raw = refresh_cookie(request)
    if not raw:
        return None
    try:
        token = RefreshToken(raw)  # verifies the signature, expiry and blacklist
    except TokenError:
        return None
    user = User.objects.select_related("tenant").filter(pk=token.get("user_id")).first()
    if user is None or not user.is_active or user.tenant is None or not user.tenant.is_active:
        return None
    if str(token.get("tenant")) != str(user.tenant_id):
        return None
    return user
