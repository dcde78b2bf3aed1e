"""Per-e-mail limits on the sign-in endpoints, on top of the per-IP limit every auth view declares.

The per-IP limit (``ratelimit_rate`` on the view, counted by ``config.throttling``) stops one client
hammering; this one stops many clients (or IPs) aiming at one address: codes sent to it and password
guesses against it. Counted with django-ratelimit in the shared cache, keyed by a hash of tenant and
e-mail, and applied whether or not the address has an account, so the limit reveals nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings

from config.errors import RateLimited
from config.throttling import shared_usage
from tenants.models import Tenant


def check_email_rate(request: Any, *, scope: str, tenant: Tenant, email: str, rate: str) -> None:
    """Count one request for ``email`` under ``scope``; raise ``RateLimited`` (429) past ``rate``."""
    if not settings.RATELIMIT_ENABLED:
        return
    subject = hashlib.sha256(f"{tenant.pk}|{email.strip().lower()}".encode()).hexdigest()
    django_request = getattr(request, "_request", request)
    usage = shared_usage(  # fails closed (503) when the shared cache is down
        django_request, group=f"auth-email:{scope}", key=lambda group, req: subject, rate=rate, fail_open=False
    )
    if usage and usage["should_limit"]:
        wait = max(1, int(usage["time_left"]))
        raise RateLimited(
            "Too many requests for this e-mail address; try again later.",
            details={"retry_after": wait},
            headers={"Retry-After": str(wait)},
        )
