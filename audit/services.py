"""Writing the audit log: one function, used by every app's services.

``audit_record`` resolves the actor from the current request (a person, an API key, an operator)
unless the caller names one, adds the client IP and request id, strips secrets from ``details``,
and writes the row in a savepoint: an audit failure is logged and never breaks the action audited
(nor the transaction around it). :func:`audit_purge` is the only way rows leave (retention).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.context import current_request
from audit.models import AuditEvent
from config.errors import DomainError
from config.request_id import get_request_id

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Keys never written to a row, at any depth of ``details``.
SECRET_MARKERS = ("password", "secret", "token", "code", "key", "authorization", "otp")
SAFE_KEYS = {"api_key_id", "api_key_name", "prefix", "key_prefix", "status_code", "response_code"}


def scrub(value: Any) -> Any:
    """``value`` without any dict entry whose name looks like a secret (recursively)."""
    if isinstance(value, dict):
        return {
            k: scrub(v)
            for k, v in value.items()
            if str(k).lower() in SAFE_KEYS or not any(m in str(k).lower() for m in SECRET_MARKERS)
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _client_ip(request: Any) -> str | None:
    # REMOTE_ADDR is the proxy's forwarded address only from a TRUSTED_PROXIES peer (config.client_ip).
    return request.META.get("REMOTE_ADDR") or None


def _actor_from_request(request: Any) -> tuple[str, str, str]:
    key = getattr(request, "api_key", None) or getattr(request, "auth", None)
    if getattr(key, "is_api_key", False):
        return AuditEvent.ActorType.API_KEY, str(key.pk), f"{key.name} ({key.prefix})"
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return actor_for_user(user)
    return AuditEvent.ActorType.ANONYMOUS, "", ""


def actor_for_user(user: Any) -> tuple[str, str, str]:
    """``(type, id, label)`` of a person, an API key's account or an operator."""
    if getattr(user, "is_service_account", False):
        key = getattr(user, "api_key", None)
        if key is not None:
            return AuditEvent.ActorType.API_KEY, str(key.pk), f"{key.name} ({key.prefix})"
    if getattr(user, "tenant_id", None) is None and getattr(user, "is_staff", False):
        return AuditEvent.ActorType.OPERATOR, str(user.pk), user.email
    return AuditEvent.ActorType.USER, str(user.pk), user.email


def _label(obj: Any) -> str:
    for attr in ("email", "name", "title", "slug", "url"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value[:254]
    return str(obj)[:254]


def audit_record(
    *,
    action: str,
    tenant: Any | None = None,
    target: Any | None = None,
    object_type: str = "",
    object_id: str = "",
    object_label: str = "",
    actor: Any | None = None,
    actor_type: str | None = None,
    actor_label: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """Append one row. ``target`` (a model instance) fills the object fields; ``actor`` (a user)
    overrides the request's; ``actor_type="anonymous"`` with ``actor_label`` (say, the e-mail of a
    failed sign-in) records someone who is not signed in. Returns None if the write failed (logged).
    """
    request = current_request.get()
    if actor is not None:
        a_type, a_id, a_label = actor_for_user(actor)
    elif actor_type is not None:
        a_type, a_id, a_label = actor_type, "", actor_label
    elif request is not None:
        a_type, a_id, a_label = _actor_from_request(request)
    else:
        a_type, a_id, a_label = AuditEvent.ActorType.SYSTEM, "", ""
    if target is not None:
        object_type = object_type or target._meta.label_lower
        object_id = object_id or str(target.pk)
        object_label = object_label or _label(target)
    if tenant is None:
        tenant = getattr(target, "tenant", None) if target is not None else None
    if tenant is None and request is not None:
        tenant = getattr(request, "tenant", None)
    try:
        with transaction.atomic():
            return AuditEvent.objects.create(
                tenant=tenant if getattr(tenant, "pk", None) else None,
                actor_type=a_type,
                actor_id=a_id,
                actor_label=(actor_label or a_label)[:254],
                action=action[:64],
                object_type=object_type[:64],
                object_id=str(object_id)[:64],
                object_label=object_label[:254],
                ip=_client_ip(request) if request is not None else None,
                request_id=(get_request_id() or "")[:64],
                details=scrub(details or {}),
            )
    except Exception:  # bookkeeping: never break the audited action
        logger.exception("audit_record_failed", extra={"action": action})
        return None


def audit_purge(*, older_than_days: int | None = None) -> int:
    """Delete rows older than the retention (``AUDIT_RETENTION_DAYS``; 0 keeps everything); returns how many.

    The trigger lets a DELETE through only for rows older than the cut-off this transaction declares.
    """
    days = settings.AUDIT_RETENTION_DAYS if older_than_days is None else older_than_days
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('documind.audit_purge_before', %s, true)", [cutoff.isoformat()])
        deleted, _ = AuditEvent.objects.filter(created_at__lt=cutoff).delete()
    return deleted


# --- decorators for the sign-in services (accounts.services) ---------------------------------


def audit_sign_in(
    method: str, *, success: str = "auth.login", failure: str = "auth.login_failed"
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Record a sign-in service's outcome: ``success`` naming the user it returns (or the first item
    of the tuple it returns), ``failure`` naming the e-mail tried when it raises a ``DomainError``."""

    def decorator(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            tenant, email = kwargs.get("tenant"), str(kwargs.get("email") or "").strip().lower()
            try:
                result = fn(*args, **kwargs)
            except DomainError as exc:
                audit_record(
                    action=failure,
                    tenant=tenant,
                    actor_type=AuditEvent.ActorType.ANONYMOUS,
                    actor_label=email,
                    details={"method": method, "reason": exc.code},
                )
                raise
            user = result[0] if isinstance(result, tuple) else result
            audit_record(action=success, tenant=tenant, actor=user, target=user, details={"method": method})
            return result

        return wrapper

    return decorator


def audit_code_request(purpose: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Record that a code was asked for an address (whether or not it has an account; never the code)."""

    def decorator(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            result = fn(*args, **kwargs)
            audit_record(
                action="auth.code_requested",
                tenant=kwargs.get("tenant"),
                actor_type=AuditEvent.ActorType.ANONYMOUS,
                actor_label=str(kwargs.get("email") or "").strip().lower(),
                details={"purpose": purpose},
            )
            return result

        return wrapper

    return decorator
