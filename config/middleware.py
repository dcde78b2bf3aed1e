"""Project-wide middleware: request ids, the error envelope for middleware errors, security headers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.request import HttpHeaders

from config.request_id import clean_request_id, set_request_id

logger = logging.getLogger(__name__)


class RequestIDMiddleware:
    """Accept a well-formed ``X-Request-ID`` or make one; expose it to logs and echo it back.

    Runs first, so django-structlog's middleware (next in line) binds the cleaned id to every log
    line of the request.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = clean_request_id(request.META.get("HTTP_X_REQUEST_ID"))
        request.META["HTTP_X_REQUEST_ID"] = request_id
        request.__dict__["headers"] = HttpHeaders(request.META)  # rebuild: django-structlog reads headers
        request.request_id = request_id  # type: ignore[attr-defined]
        request.started_at = time.perf_counter()  # type: ignore[attr-defined]
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            from config.request_id import _request_id

            _request_id.reset(token)  # type: ignore[arg-type]
        response["X-Request-ID"] = request_id
        return response


class SecurityHeadersMiddleware:
    """Headers Django's SecurityMiddleware does not set: Permissions-Policy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
