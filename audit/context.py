"""The request being served, for audit records made deep inside services (actor, IP, request id).

:class:`AuditContextMiddleware` puts the Django request in a context variable; DRF copies the user
and the API key it authenticates onto that request (``request.user``, ``request.auth``), so the
actor is read when a record is made, after authentication. Outside a request (Celery, commands)
there is none and the actor is ``system`` unless the caller names one.

It also records the operators' admin actions: every successful POST under ``/admin/`` (a change, a
deletion, a bulk action such as "deactivate tenant") becomes an ``admin.<verb>`` row naming the
path, the action and the selected ids, never the form's values.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse

current_request: ContextVar[HttpRequest | None] = ContextVar("audit_current_request", default=None)

ADMIN_PREFIX = "/admin/"


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_request.set(request)
        try:
            response = self.get_response(request)
            # The admin answers a change it made with a redirect; a 200 re-shows a form or asks to confirm.
            if request.method == "POST" and request.path.startswith(ADMIN_PREFIX) and 300 <= response.status_code < 400:
                _record_admin_post(request, response)
            return response
        finally:
            current_request.reset(token)


def _record_admin_post(request: HttpRequest, response: HttpResponse) -> None:
    from audit.services import audit_record

    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return  # a failed admin sign-in is recorded by the login signal; nothing else happens anonymously
    parts = [p for p in request.path[len(ADMIN_PREFIX) :].split("/") if p]
    if parts[:1] in (["login"], ["logout"], ["jsi18n"]):
        return
    bulk = request.POST.get("action") or ""
    verb = "action" if bulk else ("delete" if "delete" in parts else "add" if "add" in parts else "change")
    details: dict[str, Any] = {"path": request.path}
    if bulk:
        details["admin_action"] = bulk[:100]
        details["selected"] = request.POST.getlist("_selected_action")[:100]
    model = ".".join(parts[:2]) if len(parts) >= 2 else ""
    object_id = parts[2] if len(parts) >= 3 and parts[2] not in ("add",) else ""
    audit_record(action=f"admin.{verb}", object_type=model, object_id=object_id, details=details)
