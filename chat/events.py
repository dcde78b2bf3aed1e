"""Chat event payloads: one ``TypedDict`` and one builder per event, the only place they are built.

The live stream (:class:`chat.generation.Generation`), the resumed stream (an answer followed
through the database) and the WebSocket's own errors all build their events here, so a socket
client and an SSE client (the same events with ids) see the same shapes::

    chat.start  {message_id, question_id, session_id, session_title, created_session, model, resumed}
    chat.token  {message_id, delta, offset}     offset: where delta starts in the answer (characters)
    chat.end    {message_id, session_id, status, content, citations, usage, model, ttft_ms, total_ms, error?}
    error       {error: {type, message, details, request_id}}   (the API's error envelope)

Pure functions: no database, no event loop; and :class:`Subscription`, a subscriber's queue of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Literal, NotRequired, TypedDict

from chat.models import ChatSession, Message
from config.errors import envelope


class ChatStartEvent(TypedDict):
    type: Literal["chat.start"]
    message_id: str
    question_id: str | None
    session_id: str
    session_title: str
    created_session: bool
    model: str
    resumed: bool
    reply_to: NotRequired[Any]


class ChatTokenEvent(TypedDict):
    type: Literal["chat.token"]
    message_id: str
    delta: str
    offset: int


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatEndEvent(TypedDict):
    type: Literal["chat.end"]
    message_id: str
    session_id: str
    status: str
    content: str
    citations: list[dict[str, Any]]
    usage: Usage
    model: str
    ttft_ms: int | None
    total_ms: int | None
    error: NotRequired[dict[str, Any]]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    error: dict[str, Any]
    reply_to: NotRequired[Any]


ChatEvent = ChatStartEvent | ChatTokenEvent | ChatEndEvent | ErrorEvent


def chat_start(
    *, answer: Message, session: ChatSession, question_id: Any = None, created_session: bool = False, resumed: bool
) -> ChatStartEvent:
    """``chat.start`` of ``answer`` (a resumed stream does not know its question: ``question_id`` None)."""
    return {
        "type": "chat.start",
        "message_id": str(answer.pk),
        "question_id": str(question_id) if question_id is not None else None,
        "session_id": str(session.pk),
        "session_title": session.title,
        "created_session": created_session,
        "model": answer.model,
        "resumed": resumed,
    }


def chat_token(*, message_id: Any, delta: str, offset: int) -> ChatTokenEvent:
    """``chat.token``: ``delta`` starts at character ``offset`` of the answer."""
    return {"type": "chat.token", "message_id": str(message_id), "delta": delta, "offset": offset}


def error_event(code: str, message: str, details: dict[str, Any] | None = None) -> ErrorEvent:
    """``error`` in the API's envelope (the request id is the current one)."""
    return {"type": "error", **envelope(code, message, details or {})}  # type: ignore[typeddict-item]


def chat_end(
    *,
    message_id: Any,
    session_id: Any,
    status: str,
    content: str,
    citations: list[dict[str, Any]],
    prompt_tokens: int,
    completion_tokens: int,
    model: str,
    ttft_ms: int | None,
    total_ms: int | None,
    error: dict[str, Any] | None = None,
) -> ChatEndEvent:
    """``chat.end``: the answer as saved (``error`` {type, message} when it failed)."""
    event: ChatEndEvent = {
        "type": "chat.end",
        "message_id": str(message_id),
        "session_id": str(session_id),
        "status": status,
        "content": content,
        "citations": citations,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "model": model,
        "ttft_ms": ttft_ms,
        "total_ms": total_ms,
    }
    if error:
        event["error"] = error
    return event


def final_events(end: ChatEndEvent, error_details: dict[str, Any] | None = None) -> list[ChatEvent]:
    """What ends a stream: an ``error`` when the answer failed, then its ``chat.end``."""
    events: list[ChatEvent] = []
    error = end.get("error")
    if error:
        details = {**(error_details or {}), "message_id": end["message_id"]}
        events.append(error_event(error.get("type", "upstream_error"), error.get("message", ""), details))
    events.append(end)
    return events


def final_events_of(message: Message) -> list[ChatEvent]:
    """The final events of an answer that finished, from its saved row."""
    return final_events(
        chat_end(
            message_id=message.pk,
            session_id=message.session_id,
            status=message.status,
            content=message.content,
            citations=message.citations,
            prompt_tokens=message.prompt_tokens,
            completion_tokens=message.completion_tokens,
            model=message.model,
            ttft_ms=message.ttft_ms,
            total_ms=message.total_ms,
            error=message.error or None,
        )
    )


class Subscription(asyncio.Queue[ChatEvent]):
    """A subscriber's queue of events that knows how long the one just taken waited in it."""

    def __init__(self) -> None:
        super().__init__()
        self.put_times: deque[float] = deque()
        self.waited = 0.0  # seconds the last event taken spent in the queue

    def _put(self, item: ChatEvent) -> None:
        self.put_times.append(time.monotonic())
        super()._put(item)

    def _get(self) -> ChatEvent:
        self.waited = time.monotonic() - self.put_times.popleft()
        return super()._get()

    def take_tokens(self, token: ChatTokenEvent) -> tuple[ChatTokenEvent, ChatEvent | None]:
        """``token`` with the text of the tokens queued right after it (one ``chat.token`` from ``token``'s
        offset), and the first other event taken meanwhile (None if none)."""
        deltas = [token["delta"]]
        while not self.empty():
            event = self.get_nowait()
            if event["type"] != "chat.token":
                return {**token, "delta": "".join(deltas)}, event
            deltas.append(event["delta"])
        return {**token, "delta": "".join(deltas)}, None
