"""Retrieval-augmented answering: one pipeline for the WebSocket and the REST API.

1. :func:`prepare_turn` (sync, one thread hop): check the question, the session, the filter and the
   model; retrieve with :func:`documents.search.search_chunks` (hybrid, scoped to the session's project
   and documents); build the prompt within ``CHAT_CONTEXT_TOKENS``; reserve the quota (tiktoken
   estimate of the prompt + ``CHAT_MAX_ANSWER_TOKENS``); save the question and an empty ``streaming``
   answer. Quota, validation and not-found errors are raised here, before anything is saved.
2. :class:`Generation` streams the answer from the provider. It runs as its own asyncio task
   (:func:`start_generation`), independent of any socket: subscribers (sockets) come and go, the
   answer is saved every ``CHAT_SAVE_INTERVAL_MS`` while it streams and once more at the end, with
   the citations it actually used, the real token counts (reconciling the quota reservation), time to
   first token and total time. Cancel saves what was said as ``cancelled``; a provider failure saves
   it as ``failed`` with the error. Nothing relevant retrieved: a fixed answer, no model call.

Subscribers receive the socket events ``chat.token`` ``{message_id, delta, offset}``, then at most
one ``error`` and exactly one ``chat.end``. Subscribing with an offset first replays what was said
after it, which is how a reconnecting client resumes (see :mod:`chat.consumers`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from chat import db
from chat.llm import ChatProvider, ChatRequest, Delta, Usage, get_chat_provider
from chat.models import ChatSession, Message
from chat.prompting import Source, answer_language, build_prompt, citations_for, text_for
from chat.selectors import active_user_get, chat_session_get, session_history
from chat.services import (
    UNSET,
    Filters,
    chat_turn_create,
    message_finish,
    messages_save_progress,
    resolve_filters,
    resolve_model,
    validate_question,
)
from config.errors import DomainError, UpstreamError, envelope
from documents.tokenizer import count_tokens
from tenants.models import Tenant, UsageRecord
from tenants.usage import usage_reconcile, usage_record, usage_reserve

logger = logging.getLogger(__name__)


@dataclass
class Turn:
    """A question that passed every check, saved, with everything needed to generate its answer."""

    tenant: Tenant
    user: Any
    session: ChatSession
    created_session: bool
    question: Message
    answer: Message
    provider: ChatProvider
    request: ChatRequest | None  # None: nothing relevant was found, the model is not called
    sources: list[Source]
    reservation: UsageRecord | None
    language: str | None = None
    started: float = field(default_factory=time.monotonic)

    def start_event(self, *, resumed: bool = False) -> dict[str, Any]:
        return {
            "type": "chat.start",
            "message_id": str(self.answer.pk),
            "question_id": str(self.question.pk),
            "session_id": str(self.session.pk),
            "session_title": self.session.title,
            "created_session": self.created_session,
            "model": self.answer.model,
            "resumed": resumed,
        }


def _hits_to_sources(hits: list[Any]) -> list[Source]:
    return [
        Source(
            n=i + 1,
            chunk_id=str(h.chunk_id),
            document_id=str(h.document_id),
            document_title=h.document_title,
            page_start=h.page_start,
            page_end=h.page_end,
            text=h.text,
            score=float(h.score or 0.0),
        )
        for i, h in enumerate(hits)
    ]


def retrieve(*, tenant: Tenant, user: Any, question: str, filters: Filters, top_k: int | None = None) -> list[Source]:
    """The best chunks for ``question`` within the filter (hybrid search), numbered from 1."""
    from documents.search import search_chunks

    hits = search_chunks(
        tenant=tenant,
        query=question,
        top_k=top_k or settings.CHAT_TOP_K,
        mode="hybrid",
        project_id=filters.project_id,
        document_ids=filters.document_ids or None,
        user=user,
    )
    return _hits_to_sources(list(hits))


def prepare_turn(
    *,
    tenant: Tenant,
    user: Any,
    content: Any,
    session_id: Any = None,
    project_id: Any = UNSET,
    document_ids: Any = UNSET,
    model: str | None = None,
    provider: ChatProvider | None = None,
    refresh_user: bool = False,
    received_at: float | None = None,
) -> Turn:
    """Check, retrieve, build the prompt, reserve the quota and save the question (see the module docstring).

    ``project_id``/``document_ids`` narrow this turn (and become a new session's filter); left unset,
    the session's own filter applies. ``refresh_user`` reloads the user and tenant first (a socket's
    copies may be stale; :class:`chat.selectors.AccountInactive` when deactivated). Times (first token,
    total) count from ``received_at`` (``time.monotonic()``; default: now).
    """
    started = received_at or time.monotonic()
    if refresh_user:
        user = active_user_get(user_id=user.pk)
        tenant = user.tenant
    question = validate_question(content)
    session = chat_session_get(tenant=tenant, user=user, session_id=session_id) if session_id else None
    filters = resolve_filters(
        tenant=tenant,
        project_id=(session.project_id if session else None) if project_id is UNSET else project_id,
        document_ids=(session.document_ids if session else None) if document_ids is UNSET else document_ids,
    )
    model = resolve_model(tenant=tenant, requested=model or (session.model if session else None))
    provider = provider or get_chat_provider()
    sources = retrieve(tenant=tenant, user=user, question=question, filters=filters)
    language, _ = answer_language(question, tenant.setting("answer_language"))
    request = None
    if sources:
        prompt = build_prompt(
            question=question,
            sources=sources,
            history=session_history(session=session) if session else [],
            model=model,
            budget_tokens=settings.CHAT_CONTEXT_TOKENS,
            system_prompt=tenant.setting("system_prompt"),
            language_setting=tenant.setting("answer_language"),
        )
        sources = prompt.sources
        request = ChatRequest(
            model=model,
            messages=prompt.messages,
            max_tokens=settings.CHAT_MAX_ANSWER_TOKENS,
            question=question,
            sources=sources,
            language=prompt.language,
            prompt_tokens=prompt.prompt_tokens,
        )
    calls_model = request is not None and provider.calls_model
    with transaction.atomic():
        if calls_model:
            reservation = usage_reserve(
                tenant=tenant,
                user=user,
                model=model,
                prompt_tokens=request.prompt_tokens,
                completion_tokens=request.max_tokens,
            )
        else:  # no model call (nothing relevant, or the extractive provider): a request with no tokens
            reservation = usage_record(
                tenant=tenant,
                user=user,
                kind=UsageRecord.Kind.CHAT,
                model=provider.name if request is not None else "none",
            )
        created = session is None
        session, asked, answer = chat_turn_create(
            tenant=tenant,
            user=user,
            session=session,
            question=question,
            model=model if calls_model else reservation.model,
            filters=filters,
        )
    return Turn(
        tenant=tenant,
        user=user,
        session=session,
        created_session=created,
        question=asked,
        answer=answer,
        provider=provider,
        request=request,
        sources=sources,
        reservation=reservation if calls_model else None,
        language=language,
        started=started,
    )


# --- generation ------------------------------------------------------------------------------


class _ProgressSaver:
    """Saves what every streaming answer of this event loop has said so far, all in one UPDATE per
    ``CHAT_SAVE_INTERVAL_MS`` (so 200 streams cost one statement, not 200, every interval).

    Writes only touch answers still ``streaming``: a late batch can never undo a final save.
    """

    def __init__(self) -> None:
        self.dirty: dict[str, Generation] = {}
        self.task: asyncio.Task[None] | None = None

    def mark(self, generation: Generation) -> None:
        self.dirty[generation.message_id] = generation
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="chat-progress-saver")

    def forget(self, generation: Generation) -> None:
        self.dirty.pop(generation.message_id, None)
        if not self.dirty and self.task is not None:
            self.task.cancel()  # nothing left to save: do not outlive a short-lived event loop

    async def _run(self) -> None:
        try:
            while self.dirty:
                await asyncio.sleep(settings.CHAT_SAVE_INTERVAL_MS / 1000)
                batch = {message_id: generation.content for message_id, generation in self.dirty.items()}
                self.dirty.clear()
                try:
                    await db.run(messages_save_progress, contents=batch)
                except Exception:
                    logger.exception("chat_progress_save_failed", extra={"messages": len(batch)})
        finally:
            self.task = None  # a finished task would keep its event loop alive through this registry


_savers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ProgressSaver] = weakref.WeakKeyDictionary()


def _saver() -> _ProgressSaver:
    return _savers.setdefault(asyncio.get_running_loop(), _ProgressSaver())


_active: dict[str, Generation] = {}
_tasks: set[asyncio.Task[None]] = set()


class Generation:
    """The streaming of one answer, as an asyncio task that outlives the socket that asked.

    ``subscribe(offset)`` returns a queue of socket events; ``cancel()`` stops the stream and saves
    what was said as ``cancelled``. Finished generations leave the in-process registry; their final
    state is in the database.
    """

    def __init__(self, turn: Turn, *, run_db: Callable[..., Awaitable[Any]] = db.run) -> None:
        self.turn = turn
        self.run_db = run_db  # where its database work runs (chat.db.run, or the request's thread)
        self.message_id = str(turn.answer.pk)
        self.parts: list[str] = []
        self.length = 0
        self.status = Message.Status.STREAMING
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.final_events: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.ttft_ms: int | None = None
        self.error: DomainError | None = None
        self._cancel_requested = False
        self._started = False
        self._called = False  # the provider was asked (tokens may have been spent)

    # --- subscribers -------------------------------------------------------------------------
    @property
    def content(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def subscribe(self, offset: int = 0) -> asyncio.Queue[dict[str, Any]]:
        """A queue that first gets what was said after ``offset``, then everything live."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        offset = max(0, min(int(offset), self.length))
        if offset < self.length:
            queue.put_nowait(self._token_event(self.content[offset:], offset))
        for event in self.final_events:
            queue.put_nowait(event)
        if not self.done.is_set():
            self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self.subscribers):
            queue.put_nowait(event)

    def _token_event(self, delta: str, offset: int) -> dict[str, Any]:
        return {"type": "chat.token", "message_id": self.message_id, "delta": delta, "offset": offset}

    def cancel(self) -> None:
        """Stop generating; what was said is saved as ``cancelled``."""
        if self.done.is_set() or self._cancel_requested:
            return
        self._cancel_requested = True
        # A task cancelled before its first step would never reach run()'s handlers (nor save):
        # until it has started, the flag alone stops it.
        if self.task is not None and self._started:
            self.task.cancel()

    # --- the stream --------------------------------------------------------------------------
    def _append(self, text: str) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = round((time.monotonic() - self.turn.started) * 1000)
        offset = self.length
        self.parts.append(text)
        self.length += len(text)
        self._publish(self._token_event(text, offset))
        _saver().mark(self)

    async def run(self) -> None:
        """Stream, then save the final state and tell the subscribers (never raises)."""
        turn = self.turn
        usage: Usage | None = None
        error: DomainError | None = None
        status = Message.Status.COMPLETED
        self._started = True
        try:
            if self._cancel_requested:
                raise asyncio.CancelledError
            if turn.request is None:
                self._append(text_for("no_sources", turn.language))
            else:
                self._called = True
                async for item in turn.provider.stream(turn.request):
                    if isinstance(item, Delta):
                        self._append(item.text)
                    elif isinstance(item, Usage):
                        usage = item
        except asyncio.CancelledError:
            status = Message.Status.CANCELLED
            if (task := asyncio.current_task()) is not None:
                task.uncancel()
            if not self._cancel_requested:  # the server is shutting down: save, then let it stop us
                stopped = DomainError("The server stopped while this answer was being generated.", code="interrupted")
                await self._finish(Message.Status.FAILED, usage, stopped)
                raise
        except DomainError as exc:
            status, error = Message.Status.FAILED, exc
        except Exception as exc:
            logger.exception("chat_generation_failed", extra={"message_id": self.message_id})
            status, error = Message.Status.FAILED, UpstreamError("The answer could not be generated.")
            error.__cause__ = exc
        await self._finish(status, usage, error)

    async def _finish(self, status: str, usage: Usage | None, error: DomainError | None) -> None:
        turn = self.turn
        content = self.content
        total_ms = round((time.monotonic() - turn.started) * 1000)
        citations = citations_for(content, turn.sources) if turn.request is not None else []
        calls_model = turn.request is not None and turn.provider.calls_model and self._called
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens or not calls_model):
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        elif calls_model:  # the stream broke before the usage chunk: count it ourselves
            prompt_tokens = turn.request.prompt_tokens  # type: ignore[union-attr]
            completion_tokens = count_tokens(content, turn.request.model) if content else 0  # type: ignore[union-attr]
        else:
            prompt_tokens = completion_tokens = 0
        error_body = {"type": error.code, "message": error.message} if error is not None else None
        _saver().forget(self)
        try:
            await self.run_db(
                _finish_sync,
                turn=turn,
                content=content,
                status=status,
                citations=citations,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                ttft_ms=self.ttft_ms,
                total_ms=total_ms,
                error=error_body,
            )
        except Exception:
            logger.exception("chat_answer_save_failed", extra={"message_id": self.message_id})
        self.status = status
        self.error = error
        events: list[dict[str, Any]] = []
        if error is not None:
            body = envelope(error.code, error.message, {**error.details, "message_id": self.message_id})
            events.append({"type": "error", **body})
        events.append(
            {
                "type": "chat.end",
                "message_id": self.message_id,
                "session_id": str(turn.session.pk),
                "status": status,
                "content": content,
                "citations": citations,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "model": turn.answer.model,
                "ttft_ms": self.ttft_ms,
                "total_ms": total_ms,
                **({"error": error_body} if error_body else {}),
            }
        )
        self.final_events = events
        for event in events:
            self._publish(event)
        self.subscribers.clear()
        self.done.set()
        _active.pop(self.message_id, None)
        logger.info(
            "chat_answer_finished",
            extra={
                "message_id": self.message_id,
                "status": status,
                "ttft_ms": self.ttft_ms,
                "total_ms": total_ms,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
            },
        )


def _finish_sync(
    *,
    turn: Turn,
    content: str,
    status: str,
    citations: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: int | None,
    total_ms: int,
    error: dict[str, Any] | None,
) -> None:
    message_finish(
        message_id=turn.answer.pk,
        session_id=turn.session.pk,
        content=content,
        status=status,
        citations=citations,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=turn.answer.model,
        ttft_ms=ttft_ms,
        total_ms=total_ms,
        error=error,
    )
    if turn.reservation is not None:
        usage_reconcile(record=turn.reservation, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def start_generation(turn: Turn) -> Generation:
    """Start streaming ``turn``'s answer in the background; it runs to the end whoever listens."""
    generation = Generation(turn)
    _active[generation.message_id] = generation
    task = asyncio.get_running_loop().create_task(generation.run(), name=f"chat-answer-{generation.message_id}")
    generation.task = task
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return generation


def active_generation(message_id: Any) -> Generation | None:
    """The generation of answer ``message_id`` if it is streaming in this process."""
    return _active.get(str(message_id))


def cancel_session_generations(session_id: Any) -> int:
    """Cancel this process's generations in a session (before deleting it)."""
    cancelled = 0
    for generation in list(_active.values()):
        if str(generation.turn.session.pk) == str(session_id):
            generation.cancel()
            cancelled += 1
    return cancelled


async def drain(timeout: float = 30.0) -> None:
    """Wait for this process's generations to finish (tests, shutdown)."""
    pending = [t for t in list(_tasks) if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)


async def answer_complete(
    *,
    tenant: Tenant,
    user: Any,
    content: Any,
    session_id: Any = None,
    project_id: Any = UNSET,
    document_ids: Any = UNSET,
    model: str | None = None,
) -> tuple[Turn, Generation]:
    """The whole answer at once (REST): prepare, generate to the end, return the finished generation."""
    turn = await db.run_here(
        prepare_turn,
        tenant=tenant,
        user=user,
        content=content,
        session_id=session_id,
        project_id=project_id,
        document_ids=document_ids,
        model=model,
    )
    generation = Generation(turn, run_db=db.run_here)
    _active[generation.message_id] = generation
    generation.task = asyncio.current_task()
    await generation.run()
    return turn, generation
