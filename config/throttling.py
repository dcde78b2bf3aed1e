"""Rate limiting for every API view, through django-ratelimit and the shared cache.

One DRF throttle class (in ``DEFAULT_THROTTLE_CLASSES``) asks django-ratelimit whether the request
is over its limit: per API key for keys (at the key's own ``rate_limit_per_minute`` when it has one),
per user when authenticated, per client IP otherwise. Views declare stricter limits
with ``ratelimit_rate = "10/m"`` (and optionally ``ratelimit_group``). Counts live in Django's cache,
which is Redis in the distributed mode, so the limit holds across processes.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle


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
        usage = get_usage(
            request, group=group, key=client_key, rate=rate or f"{settings.RATELIMIT_PER_MINUTE}/m", increment=True
        )
        if usage and usage["should_limit"]:
            self._wait = max(1, int(usage["time_left"]))
            return False
        return True

    def wait(self) -> float | None:
        return self._wait
