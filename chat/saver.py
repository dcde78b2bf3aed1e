"""Saving streamed answers: what they have said so far (batched per event loop) and their final state.

Where things run: :class:`ProgressSaver` is a task on the event loop of the answers it saves (one
per loop, :func:`progress_saver`); the writes run on a chat database thread as deferred work
(:func:`chat.db.run_deferred`: a waiting question goes first). :func:`save_final` is synchronous,
for a thread.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

from django.conf import settings

from chat import db, events
from chat.services import message_finish, messages_save_progress
from chat.turns import Turn
from tenants.usage import usage_reconcile

logger = logging.getLogger(__name__)


class Streaming(Protocol):
    """What the saver needs of a streaming answer (a :class:`chat.generation.Generation`)."""

    message_id: str

    @property
    def content(self) -> str: ...


class ProgressSaver:
    """Saves what every streaming answer of this event loop has said so far, all in one UPDATE per
    ``CHAT_SAVE_INTERVAL_MS`` (so 200 streams cost one statement, not 200, every interval).

    Writes only touch answers still ``streaming``: a late batch can never undo a final save.
    """

    def __init__(self) -> None:
        self.dirty: dict[str, Streaming] = {}
        self.task: asyncio.Task[None] | None = None

    def mark(self, answer: Streaming) -> None:
        """``answer`` said more: save it with the next batch."""
        self.dirty[answer.message_id] = answer
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="chat-progress-saver")

    def forget(self, answer: Streaming) -> None:
        """``answer`` ended (its final save follows): leave it out of the batches."""
        self.dirty.pop(answer.message_id, None)
        if not self.dirty and self.task is not None:
            self.task.cancel()  # nothing left to save: do not outlive a short-lived event loop

    async def _run(self) -> None:
        try:
            while self.dirty:
                await asyncio.sleep(settings.CHAT_SAVE_INTERVAL_MS / 1000)
                batch = {message_id: answer.content for message_id, answer in self.dirty.items()}
                self.dirty.clear()
                try:
                    await db.run_deferred(messages_save_progress, contents=batch)
                except Exception:
                    logger.exception("chat_progress_save_failed", extra={"messages": len(batch)})
        finally:
            self.task = None  # a finished task would keep its event loop alive through this registry


_savers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ProgressSaver] = weakref.WeakKeyDictionary()


def progress_saver() -> ProgressSaver:
    """The saver of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _savers.get(loop)  # called for every streamed token: no new saver unless needed
    return found if found is not None else _savers.setdefault(loop, ProgressSaver())


def save_final(*, turn: Turn, end: events.ChatEndEvent) -> None:
    """Save the finished answer as ``end`` describes it and reconcile the quota reservation (a thread)."""
    usage = end["usage"]
    message_finish(
        message_id=turn.answer.pk,
        session_id=turn.session.pk,
        content=end["content"],
        status=end["status"],
        citations=end["citations"],
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        model=end["model"],
        ttft_ms=end["ttft_ms"],
        total_ms=end["total_ms"] or 0,
        error=end.get("error"),
    )
    if turn.reservation is not None:
        usage_reconcile(
            record=turn.reservation,
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )
