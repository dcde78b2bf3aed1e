"""The web console: server-rendered pages and the endpoints that keep its session in a cookie.

Pages render a shell (the user, their role, the limits) and small ES modules under
``console/static/console/js`` call the API with the access token they hold in memory. Pages know who
asks from the refresh cookie (:func:`console.auth.cookie_user`): signed-out people are sent to the
sign-in page, members and viewers get a 403 page for the admin pages.

The sign-in endpoints are the API's own views (same services, limits and errors) whose answer keeps
the access token and puts the refresh token in the cookie instead of the body.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.state import token_backend

from accounts import services
from accounts.exceptions import AuthenticationError, InvalidToken
from accounts.models import User
from accounts.serializers import UserSerializer
from accounts.views import AuthRateLimitMixin, LoginView, VerifyCodeView
from config.errors import TenantRequired, envelope
from console.auth import (
    clear_refresh_cookie,
    cookie_tenant,
    cookie_user,
    enforce_csrf,
    refresh_cookie,
    refresh_revoke,
    set_refresh_cookie,
)
from health.views import RootView as HealthRootView
from tenants.middleware import resolve_tenant_limited

PAGES = {
    "documents": ("Documents", "console/documents.html", False),
    "chat": ("Chat", "console/chat.html", False),
    "usage": ("Usage", "console/usage.html", False),
    "people": ("People", "console/people.html", True),
    "settings": ("Settings", "console/settings.html", True),
}


def prefers_html(request: HttpRequest) -> bool:
    """Whether the client's ``Accept`` header ranks ``text/html`` first (a browser opening a page).

    Wildcards never count: no header, ``*/*`` or ``application/json`` keep the JSON answer.
    """
    best: tuple[float, int, str] | None = None
    for index, part in enumerate(request.headers.get("Accept", "").split(",")):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media or "*" in media:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, index, media.lower())
    return best is not None and best[2] in {"text/html", "application/xhtml+xml"}


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    """Pages show who is signed in: never cached (the project's Content-Security-Policy covers them)."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_context(request: HttpRequest, user: User | None, **extra: Any) -> dict[str, Any]:
    nav = [
        {"key": key, "title": title, "url": f"/console/{key}"}
        for key, (title, _, admin_only) in PAGES.items()
        if not admin_only or (user is not None and user.is_tenant_admin)
    ]
    return {
        "app_name": settings.APP_NAME,
        "user": user,
        "workspace": user.tenant.slug if user is not None and user.tenant else "",
        "nav": nav,
        "max_upload_mb": settings.MAX_UPLOAD_MB,
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "chat_models": ",".join(settings.CHAT_ALLOWED_MODELS),
        **extra,
    }


def _sign_in_redirect(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/console/?" + urlencode({"next": request.get_full_path()}))


@never_cache
@ensure_csrf_cookie
@require_GET
def home(request: HttpRequest) -> HttpResponseBase:
    """``/console/``: the sign-in page, or the documents for someone signed in."""
    user = cookie_user(request)
    if user is not None:
        return HttpResponseRedirect("/console/documents")
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts=None) or not next_url.startswith("/console/"):
        next_url = "/console/documents"
    context = _page_context(
        request,
        None,
        page="signin",
        title="Sign in",
        next_url=next_url,
        prefill_workspace=request.GET.get("workspace", "")[:64],
        prefill_email=request.GET.get("email", "")[:254],
        code_ttl_minutes=max(1, settings.AUTH_CODE_TTL_SECONDS // 60),
    )
    return _no_store(render(request, "console/signin.html", context))


@never_cache
@ensure_csrf_cookie
@require_GET
def page(request: HttpRequest, name: str) -> HttpResponseBase:
    """A page of the console; admin pages answer 403 (rendered) to members and viewers."""
    if name not in PAGES:
        return _no_store(
            render(request, "console/404.html", _page_context(request, None, title="Not found"), status=404)
        )
    title, template, admin_only = PAGES[name]
    user = cookie_user(request)
    if user is None:
        return _sign_in_redirect(request)
    context = _page_context(request, user, page=name, title=title)
    if admin_only and not user.is_tenant_admin:
        context.update(title="Not allowed", denied=title)
        return _no_store(render(request, "console/403.html", context, status=403))
    return _no_store(render(request, template, context))


class RootView(HealthRootView):
    """``/``: browsers go to the console; API clients (no ``Accept``, ``*/*``, JSON) get the JSON index.

    The API's root view (and its schema), with the browser's redirect in front of DRF's content
    negotiation, which would answer a bare ``Accept: text/html`` with 406.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method in ("GET", "HEAD") and prefers_html(request):
            response: HttpResponseBase = HttpResponseRedirect("/console/")
        else:
            response = super().dispatch(request, *args, **kwargs)
        patch_vary_headers(response, ["Accept"])
        return response


# --- the session's endpoints -----------------------------------------------------------------


class ConsoleTenantMixin:
    """CSRF first, then ``X-Tenant-ID`` (the workspace) resolved as the tenant middleware does under /api/
    (unknown workspaces count towards the per-IP limit on tenant misses)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        enforce_csrf(request._request)
        workspace = request.headers.get("X-Tenant-ID", "").strip()
        if not workspace:
            raise TenantRequired("Enter your workspace.")
        request._request.tenant = resolve_tenant_limited(request._request, workspace)  # type: ignore[attr-defined]
        super().initial(request, *args, **kwargs)  # type: ignore[misc]


class CookieSessionMixin:
    """Moves the refresh token of a successful sign-in from the body into the console cookie."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> HttpResponseBase:
        data = getattr(response, "data", None)
        if response.status_code == 200 and isinstance(data, dict) and "refresh" in data:
            set_refresh_cookie(response, data.pop("refresh"), request=request._request)
            data["workspace"] = request._request.tenant.slug  # type: ignore[attr-defined]
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]


@extend_schema(exclude=True)
class ConsoleLoginView(ConsoleTenantMixin, CookieSessionMixin, LoginView):
    ratelimit_group = "accounts.views.LoginView"  # the API's bucket: the console is no second door


@extend_schema(exclude=True)
class ConsoleVerifyCodeView(ConsoleTenantMixin, CookieSessionMixin, VerifyCodeView):
    ratelimit_group = "accounts.views.VerifyCodeView"


@extend_schema(exclude=True)
class ConsoleRefreshView(AuthRateLimitMixin, APIView):
    """``POST /console/auth/refresh``: rotate the cookie's refresh token, answer a new access token.

    Pages of one browser take turns (Web Locks); a token presented again within the rotation's grace
    window (a page that navigated away before storing the answer) gets the same successor
    (:func:`accounts.tokens.tokens_rotate`). A failed refresh clears the cookie (401).
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    ratelimit_group = "console.refresh"

    @property
    def ratelimit_rate(self) -> str:
        return f"{max(60, settings.RATELIMIT_PER_MINUTE)}/m"  # every page load refreshes once

    def post(self, request: Request) -> Response:
        enforce_csrf(request._request)
        raw = refresh_cookie(request._request)
        if not raw:
            raise InvalidToken("You are signed out.")
        try:
            tenant = cookie_tenant(raw)
            tokens = services.tokens_refresh(tenant=tenant, refresh=raw)
        except AuthenticationError:
            response = Response(
                envelope("authentication_failed", "Your session has ended: sign in again."),
                status=status.HTTP_401_UNAUTHORIZED,
            )
            clear_refresh_cookie(response)
            return response
        user = User.objects.select_related("tenant").get(
            pk=token_backend.decode(tokens["refresh"], verify=False)["user_id"]
        )
        response = Response({"access": tokens["access"], "user": UserSerializer(user).data, "workspace": tenant.slug})
        set_refresh_cookie(response, tokens["refresh"], request=request._request)
        return response


@extend_schema(exclude=True)
class ConsoleLogoutView(APIView):
    """``POST /console/auth/logout``: revoke the cookie's refresh token on the server and clear it."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        enforce_csrf(request._request)
        raw = refresh_cookie(request._request)
        if raw:
            refresh_revoke(raw=raw)
        response = Response(status=status.HTTP_204_NO_CONTENT)
        clear_refresh_cookie(response)
        return response
