"""Readiness checks: each dependency named, with its status and latency."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from config.channel_layers import probe_layer

CHECK_TIMEOUT_SECONDS = 3.0

logger = logging.getLogger(__name__)


class CheckFailed(RuntimeError):
    """A failure described by the check itself, in words safe to show on the public endpoint."""


def check_database() -> dict[str, Any]:
    """The default database answers and has the pgvector extension."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        raise CheckFailed("the pgvector extension is not installed")
    return {"pgvector": row[0]}


def check_cache() -> dict[str, Any]:
    """The default cache (rate limits, sign-in codes) stores and returns a value."""
    key = f"health:{uuid.uuid4().hex}"
    cache.set(key, "ok", 10)
    if cache.get(key) != "ok":
        raise CheckFailed("the cache did not return what was stored")
    cache.delete(key)
    return {"backend": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]}


def check_broker() -> dict[str, Any]:
    """Connect to ``CELERY_BROKER_URL`` (for the filesystem transport: its folders are writable)."""
    from config.celery import app

    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            folder = Path(options[key])
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise CheckFailed(f"the broker folder {key} is missing or not writable")
    with app.connection_for_write(url=url) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS)
        transport = conn.transport_cls
    return {"transport": str(transport)}


def check_channel_layer() -> dict[str, Any]:
    """A message sent on the channel layer comes back (the path worker events take to sockets).

    Runs on the server's event loop (``async_to_sync`` from a sync view), where consumers receive.
    """
    layer = get_channel_layer()
    if layer is None:
        raise CheckFailed("no channel layer is configured")
    try:
        async_to_sync(probe_layer)(layer, CHECK_TIMEOUT_SECONDS)
    except TimeoutError as exc:
        raise CheckFailed(f"no round trip within {CHECK_TIMEOUT_SECONDS:.0f}s") from exc
    return {"backend": type(layer).__name__}


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "cache": check_cache,
    "broker": check_broker,
    "channel_layer": check_channel_layer,
}


def describe_failure(exc: BaseException) -> str:
    """What the public endpoint says about a failure: the check's own words, or only the exception's
    type (its text names hosts, ports, folders or users) unless DEBUG is on."""
    if isinstance(exc, CheckFailed):
        return str(exc)[:300]
    if settings.DEBUG:
        return f"{type(exc).__name__}: {exc}"[:300]
    return type(exc).__name__


def run_checks(checks: dict[str, Callable[[], dict[str, Any]]] | None = None) -> tuple[bool, dict[str, Any]]:
    """Run every check; returns (all ok, {name: {status, latency_ms, ...}})."""
    results: dict[str, Any] = {}
    ok = True
    for name, check in (checks or CHECKS).items():
        started = time.perf_counter()
        try:
            info = check()
            results[name] = {"status": "ok", **info}
        except Exception as exc:
            ok = False
            logger.warning("readiness_check_failed", exc_info=True, extra={"check": name})
            results[name] = {"status": "error", "error": describe_failure(exc)}
        results[name]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return ok, results
