"""Writes of chat data: sessions, their filters and model, and the messages of a turn."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import ChatSession, Message
from config.errors import NotFound, ValidationFailed
from integrations.models import WebhookEndpoint
from integrations.webhooks import chat_message_webhook_data, webhook_emit
from tenants.models import Tenant
from tenants.selectors import tenant_effective_settings

UNSET: Any = object()
WEBHOOK_EVENT = "chat.message.completed"
MAX_DOCUMENT_FILTER = 100


def validate_question(content: Any) -> str:
    """The question text, stripped; :class:`ValidationFailed` when empty, not text or too long."""
    if not isinstance(content, str) or not content.strip():
        raise ValidationFailed(
            "The question is empty.", details={"fields": {"content": ["This field may not be blank."]}}
        )
    content = content.strip()
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(content) > limit:
        raise ValidationFailed(
            f"The question is longer than {limit} characters.",
            details={
                "fields": {"content": [f"Ensure this field has no more than {limit} characters."]},
                "max_chars": limit,
            },
        )
    return content


def title_from_question(question: str, limit: int = 80) -> str:
    """A session title: the question's first line, cut at a word boundary."""
    line = " ".join(question.split())
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] if " " in line[:limit] else line[:limit]
    return re.sub(r"[\s,;:.-]+$", "", cut) + "…"


def resolve_model(*, tenant: Tenant, requested: str | None) -> str:
    """``requested`` when the tenant allows it, else the default; ``model_not_allowed`` (400) otherwise."""
    effective = tenant_effective_settings(tenant=tenant)
    if not requested:
        return effective["default_model"]
    allowed = effective["allowed_models"]
    if requested not in allowed:
        raise ValidationFailed(
            f"The model {requested!r} is not allowed here.",
            code="model_not_allowed",
            details={"model": requested, "allowed": allowed},
        )
    return requested


@dataclass(frozen=True)
class Filters:
    """What retrieval is narrowed to."""

    project_id: uuid.UUID | None
    document_ids: list[uuid.UUID]


def resolve_filters(*, tenant: Tenant, project_id: Any = None, document_ids: Any = None) -> Filters:
    """Check a project and document ids against the tenant: another tenant's (or no such) id is a 404."""
    from documents.models import Document, Project

    project_uuid = None
    if project_id not in (None, ""):
        try:
            project_uuid = uuid.UUID(str(project_id))
        except ValueError:
            raise NotFound("No project with this id.", details={"project": str(project_id)}) from None
        if not Project.objects.for_tenant(tenant).filter(pk=project_uuid).exists():
            raise NotFound("No project with this id.", details={"project": str(project_id)})
    ids: list[uuid.UUID] = []
    if document_ids not in (None, ""):
        if not isinstance(document_ids, list) or len(document_ids) > MAX_DOCUMENT_FILTER:
            raise ValidationFailed(
                f"document_ids must be a list of at most {MAX_DOCUMENT_FILTER} ids.",
                details={"fields": {"document_ids": ["Expected a list of document ids."]}},
            )
        bad: list[str] = []
        for value in document_ids:
            try:
                ids.append(uuid.UUID(str(value)))
            except ValueError:
                bad.append(str(value))
        ids = list(dict.fromkeys(ids))
        found = set(Document.objects.for_tenant(tenant).filter(pk__in=ids).values_list("pk", flat=True))
        missing = bad + [str(i) for i in ids if i not in found]
        if missing:
            raise NotFound("Some documents do not exist.", details={"document_ids": missing})
    return Filters(project_uuid, ids)


@transaction.atomic
def chat_session_create(
    *,
    tenant: Tenant,
    user: Any,
    title: str = "",
    project_id: Any = None,
    document_ids: Any = None,
    model: str | None = None,
) -> ChatSession:
    """A new session for ``user`` with a checked filter and model."""
    filters = resolve_filters(tenant=tenant, project_id=project_id, document_ids=document_ids)
    return ChatSession.objects.create(
        tenant=tenant,
        user=user,
        title=(title or "").strip()[:200],
        project_id=filters.project_id,
        document_ids=[str(i) for i in filters.document_ids],
        model=resolve_model(tenant=tenant, requested=model) if model else "",
    )


@transaction.atomic
def chat_session_update(
    *, session: ChatSession, title: Any = UNSET, project_id: Any = UNSET, document_ids: Any = UNSET, model: Any = UNSET
) -> ChatSession:
    """Rename a session or change its filter or model (each argument only when given)."""
    tenant = session.tenant
    if title is not UNSET:
        session.title = (title or "").strip()[:200]
    if project_id is not UNSET or document_ids is not UNSET:
        filters = resolve_filters(
            tenant=tenant,
            project_id=session.project_id if project_id is UNSET else project_id,
            document_ids=session.document_ids if document_ids is UNSET else document_ids,
        )
        session.project_id = filters.project_id
        session.document_ids = [str(i) for i in filters.document_ids]
    if model is not UNSET:
        session.model = resolve_model(tenant=tenant, requested=model) if model else ""
    session.save()
    return session


@transaction.atomic
def chat_session_delete(*, session: ChatSession) -> None:
    """Delete a session and its messages."""
    session.delete()


def _value(obj: Any, field: Any) -> Any:
    """What the ORM would insert for ``field`` (a timestamp set beforehand is kept)."""
    value = getattr(obj, field.attname)
    return field.pre_save(obj, True) if value is None else value


def _insert_sql(objs: list[Any]) -> tuple[str, list[Any]]:
    """One ``INSERT`` of model instances (of one model), with the values the ORM would save (defaults,
    ``auto_now_add``), without compiling a query: the turn's inserts are on every question's path."""
    fields = [f for f in objs[0]._meta.concrete_fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(_value(obj, f), connection) for obj in objs for f in fields]
    return f"INSERT INTO {objs[0]._meta.db_table} ({columns}) VALUES {', '.join([row] * len(objs))}", params


@transaction.atomic(savepoint=False)
def chat_turn_create(
    *, tenant: Tenant, user: Any, session: ChatSession | None, question: str, model: str, filters: Filters
) -> tuple[ChatSession, Message, Message]:
    """Save a question and the (empty, ``streaming``) answer; create the session first when needed.

    A new session takes its title from the question and its filter from the turn. One statement (the
    session's insert or update, then both messages); inside a caller's transaction it takes no
    savepoint: a failure here fails the caller's.
    """
    now = timezone.now()
    if session is None:
        session = ChatSession(
            tenant=tenant,
            user=user,
            title=title_from_question(question),
            project_id=filters.project_id,
            document_ids=[str(i) for i in filters.document_ids],
            model="",
            created_at=now,
            updated_at=now,
        )
        session_sql, session_params = _insert_sql([session])
    else:
        session.updated_at = now
        if not session.title:
            session.title = title_from_question(question)
        session_sql = f"UPDATE {ChatSession._meta.db_table} SET updated_at = %s, title = %s WHERE id = %s"
        session_params = [now, session.title, session.pk]
    asked = Message(
        tenant=tenant, session=session, role=Message.Role.USER, content=question, status=Message.Status.COMPLETED
    )
    answer = Message(
        tenant=tenant,
        session=session,
        role=Message.Role.ASSISTANT,
        content="",
        status=Message.Status.STREAMING,
        model=model,
    )
    # the answer sorts after its question: a microsecond later
    asked.created_at = asked.updated_at = now
    answer.created_at = answer.updated_at = now + timedelta(microseconds=1)
    messages_sql, messages_params = _insert_sql([asked, answer])
    with connection.cursor() as cursor:
        cursor.execute(f"WITH s AS ({session_sql}) {messages_sql}", [*session_params, *messages_params])
    session._state.adding = asked._state.adding = answer._state.adding = False
    return session, asked, answer


def messages_save_progress(*, contents: dict[str, str]) -> int:
    """Store what several streaming answers said so far, in one statement (only those still ``streaming``)."""
    if not contents:
        return 0
    table = Message._meta.db_table
    values = ", ".join(["(%s::uuid, %s)"] * len(contents))
    params: list[Any] = [item for pair in contents.items() for item in pair]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS m SET content = v.content, updated_at = now() FROM (VALUES {values}) AS v(id, content) "
            "WHERE m.id = v.id AND m.status = %s",
            [*params, Message.Status.STREAMING],
        )
        return cursor.rowcount


@transaction.atomic
def message_finish(
    *,
    message_id: uuid.UUID,
    session_id: uuid.UUID,
    content: str,
    status: str,
    citations: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    model: str,
    ttft_ms: int | None,
    total_ms: int,
    error: dict[str, Any] | None,
) -> None:
    """Store the final state of an answer and touch its session; a completed answer goes to the tenant's
    webhooks that subscribed to ``chat.message.completed`` (their deliveries commit with it).

    One statement saves both rows and tells whether any webhook subscribed: every answer ends here,
    and the ORM's updates, the answer's reload and the endpoints' query cost four times the CPU."""
    now = timezone.now()
    fields = {f.name: f for f in Message._meta.concrete_fields}
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH m AS (UPDATE {Message._meta.db_table} SET content = %s, status = %s, citations = %s,"
            " prompt_tokens = %s, completion_tokens = %s, model = %s, ttft_ms = %s, total_ms = %s, error = %s,"
            " updated_at = %s WHERE id = %s RETURNING tenant_id),"
            f" s AS (UPDATE {ChatSession._meta.db_table} SET updated_at = %s WHERE id = %s)"
            f" SELECT EXISTS (SELECT 1 FROM {WebhookEndpoint._meta.db_table} e JOIN m ON e.tenant_id = m.tenant_id"
            " WHERE e.is_active AND e.events @> ARRAY[%s]::varchar[])",
            [
                content,
                status,
                fields["citations"].get_db_prep_save(citations, connection),
                prompt_tokens,
                completion_tokens,
                model,
                ttft_ms,
                total_ms,
                fields["error"].get_db_prep_save(error or {}, connection),
                now,
                message_id,
                now,
                session_id,
                WEBHOOK_EVENT,
            ],
        )
        (subscribed,) = cursor.fetchone()
    if subscribed and status == Message.Status.COMPLETED:
        message = Message.objects.select_related("session", "tenant").filter(pk=message_id).first()
        if message is not None:
            webhook_emit(tenant=message.tenant, event_type=WEBHOOK_EVENT, data=chat_message_webhook_data(message))


def message_stream_stale(message: Message) -> bool:
    """Whether a ``streaming`` answer has gone unsaved for ``CHAT_STALE_STREAM_SECONDS``: the process that
    generated it stopped (a live one saves every ``CHAT_SAVE_INTERVAL_MS``)."""
    return (timezone.now() - message.updated_at).total_seconds() > settings.CHAT_STALE_STREAM_SECONDS


def message_mark_interrupted(*, message_id: uuid.UUID) -> int:
    """Fail an answer left ``streaming`` by a process that stopped (keeps what was saved). Only a stale
    row (:func:`message_stream_stale`): a save that came in meanwhile keeps it streaming."""
    stale_before = timezone.now() - timedelta(seconds=settings.CHAT_STALE_STREAM_SECONDS)
    return Message.objects.filter(pk=message_id, status=Message.Status.STREAMING, updated_at__lt=stale_before).update(
        status=Message.Status.FAILED,
        error={"type": "interrupted", "message": "The server stopped while this answer was being generated."},
        updated_at=timezone.now(),
    )
