"""A round-trip task proving that a worker consumes the queue."""

from __future__ import annotations

import socket

import structlog
from celery import shared_task
from django.core.cache import cache

logger = structlog.get_logger(__name__)

PING_TTL_SECONDS = 300


def ping_key(token: str) -> str:
    return f"health:ping:{token}"


@shared_task(name="health.ping", ignore_result=True)
def ping(token: str) -> None:
    """Write ``health:ping:<token>`` to the shared cache (the sender polls it) and log it.

    Used by operators (``ping.delay("x")``) and by the test suite to wait until a worker is ready.
    """
    cache.set(ping_key(token), socket.gethostname(), PING_TTL_SECONDS)
    logger.info("health_ping", token=token)
