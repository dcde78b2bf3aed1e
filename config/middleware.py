"""Project-wide middleware: request ids, the security headers Django does not set itself, request logs.

The first three are sync- and async-capable and sit at the top of ``MIDDLEWARE``: under daphne they
run on the event loop, so static files (served by ServeStatic right after them) get the request id
and the headers without a hop to a worker thread. Everything below ServeStatic runs in sync mode on
the request's thread (:mod:`config.asgi_handler`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.http.request import HttpHeaders
from django_structlog.middlewares import RequestMiddleware
from servestatic.middleware import ServeStaticMiddleware
from servestatic.responders import MissingFileError

from config.client_ip import resolve_client_ip
from config.errors import error_response
from config.request_id import clean_request_id, reset_request_id, set_request_id

GetResponse = Callable[[HttpRequest], Any]


class _HybridMiddleware:
    """Base of a middleware that runs in whichever mode its neighbours run (sync or async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self._is_async:
            return self.__acall__(request)
        before = self.before(request)
        try:
            response = self.get_response(request)
        finally:
            self.finally_(before)
        return self.after(request, response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        before = self.before(request)
        try:
            response = await self.get_response(request)
        finally:
            self.finally_(before)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> object:
        return None

    def finally_(self, state: object) -> None:
        return None

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response


class ClientIPMiddleware(_HybridMiddleware):
    """First of all: the client address from a trusted proxy, or no forwarding headers at all (:mod:`config.client_ip`)."""

    def before(self, request: HttpRequest) -> object:
        resolve_client_ip(request.META)
        return None


class RequestIDMiddleware(_HybridMiddleware):
    """Accept a well-formed ``X-Request-ID`` or make one; expose it to logs and echo it back.

    Runs first, so django-structlog's middleware (``DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID``)
    binds the cleaned id to every log line of the request, and the error envelope can quote it.
    """

    def before(self, request: HttpRequest) -> object:
        request_id = clean_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.META["HTTP_X_REQUEST_ID"] = request_id
        request.__dict__["headers"] = HttpHeaders(request.META)  # rebuild: django-structlog reads headers
        request.request_id = request_id  # type: ignore[attr-defined]
        request.started_at = time.perf_counter()  # type: ignore[attr-defined]
        return set_request_id(request_id)

    def finally_(self, state: object) -> None:
        reset_request_id(state)

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response


class SecurityHeadersMiddleware(_HybridMiddleware):
    """nosniff, frame deny, referrer policy, COOP and Permissions-Policy on every response.

    Django's ``SecurityMiddleware`` sets most of these too (and HSTS, in production), but only for
    responses that reach it; this one also covers static files and early middleware errors.
    """

    def after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        response.headers.setdefault("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response


class StaticFilesMiddleware(ServeStaticMiddleware):
    """ServeStatic, answering a missing file with the JSON 404 under ``DEBUG`` too.

    With ``DEBUG`` on, ServeStatic raises ``MissingFileError`` for a ``/static/`` path it cannot find
    (a 500 with a list of the server's folders); without it the request falls through to our 404.
    """

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        try:
            return await super().__call__(request)
        except MissingFileError:
            return error_response(404, "not_found", "Not found.")


class RequestLogMiddleware(RequestMiddleware):
    """django-structlog's request events, logging the client address :class:`ClientIPMiddleware` resolved.

    django-structlog asks django-ipware, which reads ``X-Forwarded-For`` and its kin again on its own
    terms (a tenth of a millisecond per request, and a proxy header it trusts that we do not).
    ``REMOTE_ADDR`` is already the client's address by then (:mod:`config.client_ip`).
    """

    @classmethod
    def bind_ip(cls, request: HttpRequest) -> None:
        structlog.contextvars.bind_contextvars(ip=request.META.get("REMOTE_ADDR"))
