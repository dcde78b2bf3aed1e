"""The streaming of answers: :class:`Generation`, the in-process registry and the resume decisions
(the saving of what they say is :mod:`chat.saver`). The WebSocket consumer and any other consumer (an SSE view) use only the
public API below.

Public API (call from async code on the server's event loop)::

    generation = start(turn)                  # turn: chat.turns.prepare_turn(...) (run it in a thread)
    async for event in generation.events(offset=0):   # live: chat.token ..., [error], chat.end
        ...
    async for event in observe(message, offset)       # resume an answer by id from any process
        ...
    await generation.joined()                 # before publishing its id: a cancel from anywhere finds it
    cancel(message_id) -> bool                # stop an answer generating in this process (any thread)
    cancel_anywhere(message_ids)              # a request's thread: here, else through the channel layer
    await complete(turn)                      # REST without streaming: run it to the end here

Events are built by :mod:`chat.events` (``chat.token`` {delta, offset}, then at most one ``error``
and exactly one ``chat.end``); the caller sends ``chat.start`` itself (``turn.start_event()``, or
:func:`chat.events.chat_start` for a resumed answer) before iterating. Iterating with an offset first
replays what was said after it, which is how a reconnecting client resumes; a client that goes away
only stops iterating: the generation runs on and is saved. Only a cancel (or the server shutting
down) stops it.

Where things run: a generation is an asyncio task on the event loop that started it (not tied to a
socket); its provider stream, the subscribers' queues, :func:`observe` and the saver are on that loop.
Database work runs in threads: the chat's small pool of threads with kept connections for streamed
answers (:func:`chat.db.run_deferred` for their saves, so waiting questions go first), the request's
thread (:func:`chat.db.run_here`) for :func:`complete`. The saver writes what every streaming answer
of the loop has said, all in one UPDATE per ``CHAT_SAVE_INTERVAL_MS``; the final save stores the citations actually used, the real
token counts (reconciling the quota reservation), time to first token and total time. Cancel saves
what was said as ``cancelled``; a provider failure saves it as ``failed`` with the error.

Resume decisions (:func:`observe`): an answer generating in this process is followed live; any other
is followed through the database (polled every ``RESUME_POLL_SECONDS``), and one whose row has not
changed for ``CHAT_STALE_STREAM_SECONDS`` while no process of ours generates it here is marked
``interrupted`` (failed) and ends.

Cancel: :func:`cancel` stops a generation of this process; :func:`cancel_anywhere` also reaches one in
another web process: every event loop that generates answers listens for cancels on the channel layer
(:mod:`chat.cancellation`), and the process that runs the answer turns the message into the same
:meth:`Generation.cancel`, which saves what was said as ``cancelled`` wherever the cancel came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import aclosing
from typing import Any

from asgiref.sync import async_to_sync

from chat import cancellation, db, events, saver
from chat.llm import Delta, Usage
from chat.models import Message
from chat.prompting import citations_for, text_for
from chat.services import message_mark_interrupted, message_stream_stale
from chat.turns import Turn
from config.errors import Conflict, DomainError, ServiceUnavailable, UpstreamError
from documents.tokenizer import count_tokens
from health.metrics import record_chat_answer

logger = logging.getLogger(__name__)

RESUME_POLL_SECONDS = 0.25
COALESCE_AFTER_SECONDS = 0.05  # a subscriber this far behind gets the tokens waiting for it in one event


_active: dict[str, Generation] = {}
_tasks: set[asyncio.Task[None]] = set()


class Generation:
    """The streaming of one answer, as an asyncio task that outlives whoever asked for it.

    :meth:`events` (or :meth:`subscribe`) follows it from an offset; :meth:`cancel` stops the
    stream and saves what was said as ``cancelled``. Finished generations leave the in-process
    registry; their final state is in the database.
    """

    def __init__(self, turn: Turn, *, run_db: Callable[..., Awaitable[Any]] = db.run_deferred) -> None:
        self.turn = turn
        self.run_db = run_db  # where its database work runs (chat.db.run, or the request's thread)
        self.message_id = str(turn.answer.pk)
        self.parts: list[str] = []
        self.length = 0
        self.status = Message.Status.STREAMING
        self.subscribers: set[events.Subscription] = set()
        self.final_events: list[events.ChatEvent] = []
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop it streams on
        self.ttft_ms: int | None = None
        self.error: DomainError | None = None
        self._cancel_requested = False
        self._started = False
        self._called = False  # the provider was asked (tokens may have been spent)
        self.saver: saver.ProgressSaver | None = None  # its event loop's (the loop it streams on)

    # --- subscribers -------------------------------------------------------------------------
    @property
    def content(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    def subscribe(self, offset: int = 0) -> events.Subscription:
        """A queue that first gets what was said after ``offset``, then everything live."""
        queue = events.Subscription()
        offset = max(0, min(int(offset), self.length))
        if offset < self.length:
            queue.put_nowait(events.chat_token(message_id=self.message_id, delta=self.content[offset:], offset=offset))
        for event in self.final_events:
            queue.put_nowait(event)
        if not self.done.is_set():
            self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: events.Subscription) -> None:
        self.subscribers.discard(queue)

    def events(self, offset: int = 0) -> AsyncGenerator[events.ChatEvent, None]:
        """What was said after ``offset``, then the live events, up to and including ``chat.end``
        (subscribed at once: nothing said between this call and the first iteration is lost).

        One ``chat.token`` per model chunk while the subscriber keeps up; one that fell behind (its next
        token waited ``COALESCE_AFTER_SECONDS`` or more: the event loop is saturated) gets every token
        waiting for it as one ``chat.token`` (the first one's offset), so its sends shrink as the load grows.
        """
        return self._events(self.subscribe(offset))

    async def _events(self, queue: events.Subscription) -> AsyncGenerator[events.ChatEvent, None]:
        try:
            pending: events.ChatEvent | None = None
            while True:
                event, pending = (pending, None) if pending is not None else (await queue.get(), None)
                if event["type"] == "chat.token" and queue.waited >= COALESCE_AFTER_SECONDS and not queue.empty():
                    event, pending = queue.take_tokens(event)
                yield event
                if event["type"] == "chat.end":
                    return
        finally:
            self.unsubscribe(queue)

    def _publish(self, event: events.ChatEvent) -> None:
        for queue in list(self.subscribers):
            queue.put_nowait(event)

    def cancel(self) -> None:
        """Stop generating; what was said is saved as ``cancelled``. Safe from any thread (a REST view's)."""
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if self.loop is not None and here is not self.loop:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the answer is over anyway
                self.loop.call_soon_threadsafe(self._cancel)
            return
        self._cancel()

    def _cancel(self) -> None:
        if self.done.is_set() or self._cancel_requested:
            return
        self._cancel_requested = True
        # A task cancelled before its first step would never reach run()'s handlers (nor save):
        # until it has started, the flag alone stops it.
        if self.task is not None and self._started:
            self.task.cancel()

    async def joined(self) -> None:
        """Return once a cancel sent from any process reaches it (at once, but for the loop's first answer)."""
        await cancellation.listen(cancel)

    # --- the stream --------------------------------------------------------------------------
    def _append(self, text: str) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = round((time.monotonic() - self.turn.started) * 1000)
        offset = self.length
        self.parts.append(text)
        self.length += len(text)
        self._publish(events.chat_token(message_id=self.message_id, delta=text, offset=offset))
        if self.saver is None:  # looked up once: every streamed token marks the answer
            self.saver = saver.progress_saver()
        self.saver.mark(self)

    async def _stream(self) -> Usage | None:
        """Append the provider's deltas (or the fixed no-sources answer); the usage it reported."""
        turn, usage = self.turn, None
        if self._cancel_requested:
            raise asyncio.CancelledError
        if turn.request is None:
            self._append(text_for("no_sources", turn.language))
            return None
        self._called = True
        async for item in turn.provider.stream(turn.request):
            if isinstance(item, Delta):
                self._append(item.text)
            elif isinstance(item, Usage):
                usage = item
        return usage

    async def run(self) -> None:
        """Stream, then save the final state and tell the subscribers (never raises, but re-raises a
        cancellation that is not ours: the server shutting down)."""
        usage: Usage | None = None
        error: DomainError | None = None
        status = Message.Status.COMPLETED
        self._started = True
        try:
            usage = await self._stream()
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

    def _token_counts(self, usage: Usage | None, content: str) -> tuple[int, int]:
        """(prompt, completion) tokens: the provider's, else counted here when the model was called."""
        turn = self.turn
        calls_model = turn.request is not None and turn.provider.calls_model and self._called
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens or not calls_model):
            return usage.prompt_tokens, usage.completion_tokens
        if calls_model:  # the stream broke before the usage chunk: count it ourselves
            assert turn.request is not None
            return turn.request.prompt_tokens, count_tokens(content, turn.request.model) if content else 0
        return 0, 0

    async def _finish(self, status: str, usage: Usage | None, error: DomainError | None) -> None:
        turn, content = self.turn, self.content
        prompt_tokens, completion_tokens = self._token_counts(usage, content)
        end = events.chat_end(
            message_id=self.message_id,
            session_id=turn.session.pk,
            status=status,
            content=content,
            citations=citations_for(content, turn.sources) if turn.request is not None else [],
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=turn.answer.model,
            ttft_ms=self.ttft_ms,
            total_ms=round((time.monotonic() - turn.started) * 1000),
            error={"type": error.code, "message": error.message} if error is not None else None,
        )
        (self.saver or saver.progress_saver()).forget(self)
        try:
            await self.run_db(saver.save_final, turn=turn, end=end)
        except Exception:
            logger.exception("chat_answer_save_failed", extra={"message_id": self.message_id})
        self.status, self.error = status, error
        self.final_events = events.final_events(end, error.details if error is not None else None)
        for event in self.final_events:
            self._publish(event)
        self.subscribers.clear()
        self.done.set()
        _active.pop(self.message_id, None)
        record_chat_answer(
            status=status, ttft_ms=self.ttft_ms, total_ms=end["total_ms"] or 0, completion_tokens=completion_tokens
        )
        logger.info(
            "chat_answer_finished",
            extra={
                "message_id": self.message_id,
                "status": status,
                "ttft_ms": self.ttft_ms,
                "total_ms": end["total_ms"],
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
            },
        )


# --- the public API ----------------------------------------------------------------------------


def _register(generation: Generation, task: asyncio.Task[Any] | None) -> None:
    generation.loop, generation.task = asyncio.get_running_loop(), task
    _active[generation.message_id] = generation


def start(turn: Turn) -> Generation:
    """Start streaming ``turn``'s answer in the background; it runs to the end whoever listens.
    Await :meth:`Generation.joined` before publishing its id (``chat.start``)."""
    generation = Generation(turn)
    task = asyncio.get_running_loop().create_task(generation.run(), name=f"chat-answer-{generation.message_id}")
    _register(generation, task)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return generation


async def complete(turn: Turn) -> Generation:
    """Generate ``turn``'s answer to the end in the calling task (REST without streaming)."""
    generation = Generation(turn, run_db=db.run_here)
    _register(generation, asyncio.current_task())
    await generation.joined()
    await generation.run()
    return generation


def active_generation(message_id: Any) -> Generation | None:
    """The generation of answer ``message_id`` if it is streaming in this process."""
    return _active.get(str(message_id))


def cancel(message_id: Any) -> bool:
    """Stop answer ``message_id`` if it generates in this process; whether it did (from any thread)."""
    generation = active_generation(message_id)
    if generation is None or generation.done.is_set():
        return False
    generation.cancel()
    return True


def cancel_anywhere(message_ids: Iterable[Any]) -> None:
    """From a request's thread: stop each answer here, or send its cancel to the process generating it
    (:func:`chat.cancellation.send_cancel`, on the server's loop). Raises the layer's error when it cannot send."""
    elsewhere = [str(message_id) for message_id in message_ids if not cancel(message_id)]
    if elsewhere:
        async_to_sync(cancellation.send_cancel)(elsewhere)


def answer_cancel(message: Message) -> None:
    """From a request's thread: stop answer ``message`` wherever it generates (:func:`cancel_anywhere`).

    Raises ``Conflict`` (``answer_finished``) when it has ended, or its process stopped (then it is
    marked ``interrupted``, as a resume would), and ``ServiceUnavailable`` when the cancel cannot be sent."""
    if cancel(message.pk):
        return
    if message_mark_interrupted(message_id=message.pk):  # stale: nobody generates it any more
        message.refresh_from_db(fields=["status"])
    else:
        message.refresh_from_db(fields=["status", "updated_at"])
    if message.status != Message.Status.STREAMING:
        raise Conflict(
            f"The answer already ended ({message.status}).",
            code="answer_finished",
            details={"message_id": str(message.pk), "status": message.status},
        )
    try:
        cancel_anywhere([message.pk])
    except Exception as exc:
        raise ServiceUnavailable("The cancel could not be sent; retry soon.") from exc


async def observe(message: Message, offset: int = 0) -> AsyncGenerator[events.ChatEvent, None]:
    """Every event of answer ``message`` after ``offset`` characters, up to its ``chat.end``.

    Live when it generates in this process; otherwise followed through its saved row (see the
    module docstring for when a silent stream is declared interrupted).
    """
    generation = active_generation(message.pk)
    stream = generation.events(offset) if generation is not None else _follow_saved(message, offset)
    async with aclosing(stream):  # a consumer that stops early unsubscribes at once
        async for event in stream:
            yield event


def _reload_message(*, message_id: Any) -> Message:
    return Message.objects.select_related("session").get(pk=message_id)


async def _follow_saved(message: Message, offset: int) -> AsyncGenerator[events.ChatEvent, None]:
    """Replay and follow an answer this process does not generate, through the database."""
    # Not clamped to what is saved: the database lags the stream (saved every CHAT_SAVE_INTERVAL_MS), and
    # the client already holds everything before ``offset``; it gets only what comes after.
    sent = max(0, offset)
    while True:
        if len(message.content) > sent:
            yield events.chat_token(message_id=message.pk, delta=message.content[sent:], offset=sent)
            sent = len(message.content)
        if message.status != Message.Status.STREAMING:
            for event in events.final_events_of(message):
                yield event
            return
        if message_stream_stale(message) and active_generation(message.pk) is None:
            await db.run(message_mark_interrupted, message_id=message.pk)
        else:
            await asyncio.sleep(RESUME_POLL_SECONDS)
        message = await db.run(_reload_message, message_id=message.pk)


async def drain(timeout: float = 30.0) -> None:
    """Wait for this process's generations to finish (tests, shutdown)."""
    pending = [t for t in list(_tasks) if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
