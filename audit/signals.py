"""Operators signing in to the Django admin (the API's sign-ins are recorded by accounts.services)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from audit.context import ADMIN_PREFIX
from audit.models import AuditEvent
from audit.services import audit_record


def _is_admin(request: Any) -> bool:
    return request is not None and str(getattr(request, "path", "")).startswith(ADMIN_PREFIX)


@receiver(user_logged_in, dispatch_uid="audit_admin_login")
def _admin_login(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    if _is_admin(request):
        audit_record(action="admin.login", actor=user, target=user)


@receiver(user_login_failed, dispatch_uid="audit_admin_login_failed")
def _admin_login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if _is_admin(request):
        audit_record(
            action="admin.login_failed",
            actor_type=AuditEvent.ActorType.ANONYMOUS,
            actor_label=str(credentials.get("username") or credentials.get("email") or "")[:254],
        )
