"""One error envelope for every error, wherever it is raised.

``{"error": {"type", "message", "details", "request_id"}}``: DRF exceptions go through
:func:`exception_handler` (which wraps DRF's own, keeping its transaction rollback), Django's 404/500
and middleware errors through :func:`error_response`. Domain code raises :class:`DomainError`
subclasses with a machine-readable ``code``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from config.request_id import get_request_id

logger = logging.getLogger(__name__)


class DomainError(Exception):
    """Base of the domain exceptions: each has an HTTP status and a snake_case code."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    code: str = "bad_request"
    default_message: str = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        if code:
            self.code = code
        super().__init__(self.message)


class ValidationFailed(DomainError):
    status_code, code, default_message = 400, "validation_error", "The request is not valid."


class TenantRequired(DomainError):
    status_code, code, default_message = 400, "tenant_required", "The X-Tenant-ID header is required."


class TenantNotFound(DomainError):
    status_code, code, default_message = 404, "tenant_not_found", "No tenant matches X-Tenant-ID."


class TenantInactive(DomainError):
    status_code, code, default_message = 403, "tenant_inactive", "This tenant is deactivated."


class NotFound(DomainError):
    status_code, code, default_message = 404, "not_found", "Not found."


class Conflict(DomainError):
    status_code, code, default_message = 409, "conflict", "The request conflicts with the current state."


class PayloadTooLarge(DomainError):
    status_code, code, default_message = 413, "payload_too_large", "The upload is too large."


class UnsupportedMediaType(DomainError):
    status_code, code, default_message = 415, "unsupported_media_type", "This file type is not supported."


class Unprocessable(DomainError):
    status_code, code, default_message = 422, "unprocessable", "The content could not be processed."


class RateLimited(DomainError):
    status_code, code, default_message = 429, "rate_limited", "Too many requests; slow down."


class QuotaExceeded(DomainError):
    status_code, code, default_message = 429, "quota_exceeded", "The token quota is used up."


class UpstreamError(DomainError):
    status_code, code, default_message = 502, "upstream_error", "The language model provider failed."


class ServiceUnavailable(DomainError):
    status_code, code, default_message = 503, "service_unavailable", "A service this needs is unavailable; retry soon."


_DRF_CODES: dict[type[Exception], str] = {
    exceptions.ParseError: "validation_error",  # malformed JSON/multipart: a 400 like any invalid input
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "validation_error",
}

STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of every error response."""
    return {"error": {"type": code, "message": message, "details": details or {}, "request_id": get_request_id()}}


def error_response(
    status_code: int,
    code: str | None = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A plain Django ``JsonResponse`` carrying the envelope (for middleware and Django handlers)."""
    code = code or STATUS_CODES.get(status_code, "error")
    # Rendered by DRF's JSON renderer, as DRF's own errors are: the same bytes for the same envelope
    # (compact separators, UTF-8 rather than \u escapes), whichever layer refused the request.
    response = JsonResponse(
        envelope(code, message or code.replace("_", " ").capitalize() + ".", details),
        status=status_code,
        encoder=JSONRenderer.encoder_class,
        json_dumps_params={"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False},
    )
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _message_from_detail(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        return _message_from_detail(detail[0])
    if isinstance(detail, dict) and detail:
        field, value = next(iter(detail.items()))
        text = _message_from_detail(value)
        # "detail" is not a field: simplejwt and DRF put the whole message there.
        return text if field in ("non_field_errors", "detail") else f"{field}: {text}"
    return "The request is not valid."


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: DRF's own handling, then the envelope."""
    if isinstance(exc, DomainError):
        response = Response(envelope(exc.code, exc.message, exc.details), status=exc.status_code, headers=exc.headers)
        set_rollback()
        return response
    if isinstance(exc, RequestDataTooBig):
        set_rollback()
        return Response(envelope("payload_too_large", "The request body is too large."), status=413)
    if isinstance(exc, SuspiciousOperation):  # too many fields or files, ...: Django answers these with a 400
        logging.getLogger(f"django.security.{type(exc).__name__}").warning(str(exc))
        set_rollback()
        return Response(envelope("bad_request", "Bad request."), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        logger.error("unhandled_exception", exc_info=exc)
        set_rollback()
        message = f"{type(exc).__name__}: {exc}" if settings.DEBUG else "An internal error occurred."
        return Response(envelope("internal_error", message), status=500)

    code = next(
        (c for klass, c in _DRF_CODES.items() if isinstance(exc, klass)),
        STATUS_CODES.get(response.status_code, "error"),
    )
    if isinstance(exc, exceptions.AuthenticationFailed) and getattr(exc, "get_codes", None):
        code = "authentication_failed"
    code = getattr(exc, "envelope_code", None) or code  # a subclass naming its own type (insufficient_scope)
    detail = getattr(exc, "detail", None)
    if isinstance(exc, exceptions.ValidationError):
        details = {"fields": detail} if isinstance(detail, dict) else {"non_field_errors": detail}
        message = _message_from_detail(detail)
    else:
        details = {}
        message = _message_from_detail(detail) if detail is not None else str(exc)
    if isinstance(exc, exceptions.Throttled) and exc.wait:
        details["retry_after"] = int(exc.wait)
    response.data = envelope(code, message, details)
    return response


def ratelimited_view(request: HttpRequest, exception: Exception) -> JsonResponse:
    """django-ratelimit's ``RATELIMIT_VIEW``: 429 in the envelope with ``Retry-After``."""
    return error_response(429, "rate_limited", "Too many requests; slow down.", headers={"Retry-After": "60"})


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's 400 view (``SuspiciousOperation``: a bad Host header, an oversized body, ...)."""
    if isinstance(exception, RequestDataTooBig):
        return error_response(413, "payload_too_large", "The request body is too large.")
    return error_response(400, "bad_request", "Bad request.")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's 403 view (``PermissionDenied`` raised outside DRF)."""
    return error_response(403, "permission_denied", "You do not have permission to do this.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django's 404 view (``Http404`` raised outside DRF, unknown URLs)."""
    return error_response(404, "not_found", f"No route matches {request.path}.")


def handler500(request: HttpRequest) -> JsonResponse:
    """Django's 500 view: no internals, whatever the error was (Django logs the traceback)."""
    return error_response(500, "internal_error", "An internal error occurred.")


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """``CSRF_FAILURE_VIEW`` (only session-authenticated forms such as the admin can hit it)."""
    return error_response(403, "permission_denied", "CSRF verification failed.")


def not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """The catch-all route: unknown URLs get the envelope whatever DEBUG says."""
    return handler404(request)
