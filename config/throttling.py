"""Rate limiting for every API view, through django-ratelimit and the shared cache.

One DRF throttle class (in ``DEFAULT_THROTTLE_CLASSES``) asks django-ratelimit whether the request
is over its limit: per API key for keys (at the key's own ``rate_limit_per_minute`` when it has one),
per user when authenticated, per client IP otherwise. Views declare stricter limits
with ``ratelimit_rate = "10/m"`` (and optionally ``ratelimit_group``). Counts live in Django's cache,
which is Redis in the distributed mode, so the limit holds across processes.

When that cache cannot be reached, the general API limit fails open (the request goes through and a
``ratelimit_unavailable`` warning is logged) while the stricter limits of the sign-in views fail
closed: 503 ``service_unavailable`` (design.md, "Counters").

``RATELIMIT_API_COUNTER=process`` counts the general limit (per user, client IP or API key) in this
process's memory instead (:class:`ProcessCounter`): no cache round trip per request (in the embedded
default that is a database write and a row lock per request). Only for installs with one web process:
each process counts on its own, so N processes allow N times the limit. Views with a limit of their
own (sign-in, codes) and the unknown-tenant counter always count in the shared cache.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import django_ratelimit
import django_ratelimit.core
from django.conf import settings
from django.core.cache import caches
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.cache import CACHE_ERRORS

logger = logging.getLogger(__name__)
RETRY_AFTER_UNAVAILABLE = 5


def shared_usage(
    request: Any,
    *,
    group: str,
    key: Callable[[str, Any], str],
    rate: str,
    fail_open: bool,
    increment: bool = True,
) -> dict[str, Any] | None:
    """django-ratelimit's count of this request (incremented unless ``increment`` is false) in the shared cache.

    When the cache cannot be reached: ``None`` (not limited) with a warning if ``fail_open``, else
    :class:`ServiceUnavailable` (503, ``Retry-After``).
    """
    try:
        if increment and hasattr(caches[settings.RATELIMIT_USE_CACHE], "count_hit"):
            return _counted(request, group=group, key=key, rate=rate)
        return get_usage(request, group=group, key=key, rate=rate, increment=increment)
    except CACHE_ERRORS as exc:
        logger.warning(
            "ratelimit_unavailable",
            extra={"group": group, "fails": "open" if fail_open else "closed", "error": type(exc).__name__},
        )
        if fail_open:
            return None
        from config.errors import ServiceUnavailable  # config.errors loads DRF, whose settings load this module

        raise ServiceUnavailable(
            "Sign-in is unavailable for a moment (its rate limits cannot be checked); try again shortly.",
            details={"retry_after": RETRY_AFTER_UNAVAILABLE},
            headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
        ) from exc


def _counted(request: Any, *, group: str, key: Callable[[str, Any], str], rate: str) -> dict[str, Any] | None:
    """django-ratelimit's ``get_usage(increment=True)`` with the cache's one-round-trip ``count_hit``
    (``config.cache.AtomicDatabaseCache``: one statement; ``MeteredRedisCache``: one MULTI/EXEC) for its
    ``add`` then ``incr``: the same key, window and answer."""
    if not getattr(settings, "RATELIMIT_ENABLE", True):  # django-ratelimit's own switch, as get_usage reads it
        return None
    value = key(group, request)
    limit, period = django_ratelimit.core._split_rate(rate)
    window = django_ratelimit.core._get_window(value, period)
    cache_key = django_ratelimit.core._make_cache_key(group, window, rate, value, django_ratelimit.ALL)
    try:
        count = caches[settings.RATELIMIT_USE_CACHE].count_hit(
            cache_key, period + django_ratelimit.core.EXPIRATION_FUDGE
        )
    except ValueError:  # the key expired between the statement and incr's read: as get_usage answers
        if getattr(settings, "RATELIMIT_FAIL_OPEN", False):
            return None
        return {"count": 0, "limit": 0, "should_limit": True, "time_left": -1}
    time_left = window - int(django_ratelimit.core.time.time())
    return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": time_left}


def shared_count(request: Any, *, group: str, key: Callable[[str, Any], str], rate: str) -> dict[str, Any] | None:
    """What :func:`shared_usage` counts for this request, read without counting: one cache read.

    django-ratelimit's ``get_usage(increment=False)`` first *adds* a zero under the key (a write per
    request); this reads the same key (its own key and window helpers, as it uses them). Fails open
    (``None``, with a warning) when the cache cannot be reached.
    """
    value = key(group, request)
    limit, period = django_ratelimit.core._split_rate(rate)
    window = django_ratelimit.core._get_window(value, period)
    cache_key = django_ratelimit.core._make_cache_key(group, window, rate, value, django_ratelimit.ALL)
    try:
        count = caches[settings.RATELIMIT_USE_CACHE].get(cache_key, 0)
    except CACHE_ERRORS as exc:
        logger.warning("ratelimit_unavailable", extra={"group": group, "fails": "open", "error": type(exc).__name__})
        return None
    time_left = window - int(django_ratelimit.core.time.time())
    return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": time_left}


class ProcessCounter:
    """Fixed-window counts in this process's memory, on django-ratelimit's windows (the same staggered
    minute per key, and its clock), for the general API limit under ``RATELIMIT_API_COUNTER=process``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, int], int] = {}
        self._purge_at = 0.0

    def hit(self, *, group: str, value: str, rate: str) -> dict[str, Any]:
        """Count one request of ``value`` in ``group``; django-ratelimit's usage dict."""
        # django-ratelimit's own parsing and window (pinned version; private helpers, used as it uses them)
        limit, period = django_ratelimit.core._split_rate(rate)
        window = django_ratelimit.core._get_window(value, period)  # the window's last second
        now = django_ratelimit.core.time.time()
        with self._lock:
            if now >= self._purge_at:  # forget windows that have ended, once a minute
                self._counts = {key: n for key, n in self._counts.items() if key[3] >= int(now)}
                self._purge_at = now + 60
            key = (group, rate, value, window)
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        return {"count": count, "limit": limit, "should_limit": count > limit, "time_left": window - int(now)}

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


PROCESS_COUNTER = ProcessCounter()


def _api_key(request: Any) -> Any:
    auth = getattr(request, "auth", None)
    return auth if getattr(auth, "is_api_key", False) else None


def client_key(group: str, request: Any) -> str:
    """``key:<id>`` for API keys, ``user:<id>`` for authenticated requests, ``ip:<addr>`` for anonymous ones."""
    key = _api_key(request)
    if key is not None:
        return f"key:{key.pk}"
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    # REMOTE_ADDR is the proxy's X-Forwarded-For only from a TRUSTED_PROXIES peer (config.client_ip).
    return "ip:" + (request.META.get("REMOTE_ADDR") or "unknown")


class RateLimitThrottle(BaseThrottle):
    """DRF throttle backed by django-ratelimit; 429 ``rate_limited`` with ``Retry-After``."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        if not settings.RATELIMIT_ENABLED:
            return True
        rate = getattr(view, "ratelimit_rate", None)
        group = getattr(view, "ratelimit_group", None) or (
            f"{type(view).__module__}.{type(view).__name__}" if rate else "api-default"
        )
        key = _api_key(request)
        if key is not None and key.rate_limit_per_minute and not getattr(view, "ratelimit_rate", None):
            rate, group = f"{key.rate_limit_per_minute}/m", "api-key"
        general = not getattr(view, "ratelimit_rate", None)
        rate = rate or f"{settings.RATELIMIT_PER_MINUTE}/m"
        if general and settings.RATELIMIT_API_COUNTER == "process":
            usage = PROCESS_COUNTER.hit(group=group, value=client_key(group, request), rate=rate)
        else:
            # the general limits fail open; views with a rate of their own (sign-in) fail closed
            usage = shared_usage(request, group=group, key=client_key, rate=rate, fail_open=general)
        if usage and usage["should_limit"]:
            self._wait = max(1, int(usage["time_left"]))
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
