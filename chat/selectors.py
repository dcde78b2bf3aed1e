"""Reads of chat data. Sessions are private to their user: every selector takes the tenant and the user."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from chat.models import ChatSession, Message
from config.errors import DomainError, NotFound
from tenants.models import Tenant


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def chat_session_list(*, tenant: Tenant | None, user: Any) -> QuerySet[ChatSession]:
    """The user's own sessions in ``tenant`` (empty without a tenant), most recent first."""
    return ChatSession.objects.for_tenant(tenant).filter(user=user)


def chat_session_get(*, tenant: Tenant, user: Any, session_id: Any) -> ChatSession:
    """The user's session ``session_id``; :class:`NotFound` for anyone else's (another tenant's too)."""
    pk = _uuid(session_id)
    session = chat_session_list(tenant=tenant, user=user).filter(pk=pk).first() if pk else None
    if session is None:
        raise NotFound("No chat session with this id.", details={"session_id": str(session_id)})
    return session


def message_list(*, session: ChatSession) -> QuerySet[Message]:
    """The messages of ``session``, oldest first."""
    # "-role": a question sorts before its answer should both get the same timestamp
    return Message.objects.filter(session=session, tenant_id=session.tenant_id).order_by("created_at", "-role")


def assistant_message_get(*, tenant: Tenant, user: Any, message_id: Any) -> Message:
    """One of the user's answers (for resuming a stream); :class:`NotFound` otherwise."""
    pk = _uuid(message_id)
    message = (
        Message.objects.for_tenant(tenant)
        .filter(pk=pk, role=Message.Role.ASSISTANT, session__user=user)
        .select_related("session")
        .first()
        if pk
        else None
    )
    if message is None:
        raise NotFound("No answer with this id.", details={"message_id": str(message_id)})
    return message


def streaming_answer_ids(*, session: ChatSession) -> list[uuid.UUID]:
    """The ids of ``session``'s answers still ``streaming`` (generating in some process, or left so by one that stopped)."""
    return list(
        message_list(session=session)
        .filter(role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)
        .values_list("pk", flat=True)
    )


def session_history(*, session: ChatSession, limit: int = 20) -> list[dict[str, str]]:
    """The last ``limit`` completed question/answer messages, oldest first, as prompt turns."""
    rows = list(
        message_list(session=session)
        .exclude(content="")
        .filter(status__in=[Message.Status.COMPLETED, Message.Status.CANCELLED])
        .order_by("-created_at")
        .values("role", "content")[:limit]
    )
    rows.reverse()
    return [{"role": row["role"], "content": row["content"]} for row in rows]


class AccountInactive(DomainError):
    status_code, code, default_message = 403, "account_inactive", "This user or tenant is deactivated."


def active_user_get(*, user_id: Any) -> Any:
    """The user with their tenant, fresh from the database; :class:`AccountInactive` when either is off.

    Long-lived sockets call this before each question, so deactivation and new tenant settings apply.
    """
    from accounts.models import User

    user = User.objects.select_related("tenant").filter(pk=user_id).first()
    if user is None or not user.is_active or user.tenant is None or not user.tenant.is_active:
        raise AccountInactive()
    return user
