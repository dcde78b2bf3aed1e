"""Rate limiting for every API view, through django-ratelimit and the shared cache.

One DRF throttle class (in ``DEFAULT_THROTTLE_CLASSES``) asks django-ratelimit whether the request
is over its limit: per API key for keys (at the key's own ``rate_limit_per_minute`` when it has one),
per user when authenticated, per client IP otherwise. Views declare stricter limits
with ``ratelimit_rate = "10/m"`` (and optionally ``ratelimit_group``). Counts live in Django's cache,
which is Redis in the distributed mode, so the limit holds across processes.

When that cache cannot be reached, the general API limit fails open (the request goes through and a
``ratelimit_unavailable`` warning is logged) while the stricter limits of the sign-in views fail
closed: 503 ``service_unavailable`` (design.md, "Counters").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
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
        usage = shared_usage(
            request,
            group=group,
            key=client_key,
            rate=rate or f"{settings.RATELIMIT_PER_MINUTE}/m",
            # the general limits fail open; views with a rate of their own (sign-in) fail closed
            fail_open=not getattr(view, "ratelimit_rate", None),
        )
        if usage and usage["should_limit"]:
            self._wait = max(1, int(usage["time_left"]))
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
