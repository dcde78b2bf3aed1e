"""django-axes for the Django admin's login only: per IP and per account, counted in the shared cache.

``AXES_ONLY_ADMIN_SITE`` keeps axes from refusing API sign-ins (they keep their JSON answers and
their own limits, ``accounts.ratelimits``), but axes would still count API failures against the
same user name; this handler counts admin failures only, so the API cannot lock an operator out.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.cache import AxesCacheHandler
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The address axes counts: ``REMOTE_ADDR`` as ``config.client_ip`` resolved it (proxies only if trusted)."""
    return request.META.get("REMOTE_ADDR")


class AdminLoginCacheHandler(AxesCacheHandler):
    """Axes' cache handler, recording the admin site's login failures only."""

    def user_login_failed(self, sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
        if request is None or not self.is_admin_request(request):
            return
        super().user_login_failed(sender, credentials, request, **kwargs)

    def user_logged_in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        if request is None or not self.is_admin_request(request):
            return
        super().user_logged_in(sender, request, user, **kwargs)
