"""Chat answers as Server-Sent Events (``Accept: text/event-stream``), with the socket's semantics.

The events are the socket's own, from :mod:`chat.events` through :mod:`chat.generation`'s public API
(``start``, ``Generation.events``, ``observe``, ``cancel``): ``chat.start``, ``chat.token {delta,
offset}``, at most one ``error``, one ``chat.end``, each written as ``event: <type>`` / ``id: <id>`` /
``data: <json>``. Event ids count the characters of the answer delivered so far: ``chat.start`` is
``0``, a token's id is the offset just after its ``delta``, the final ``error``/``chat.end`` carry
``<length>.end``. ``Last-Event-ID: N`` therefore resumes from character ``N``
(``GET .../messages/{id}/stream``), as ``chat.resume`` with ``offset: N`` does on the socket.

The generation is started on the server's event loop before the response streams (asgiref's
``async_to_sync`` from the view's thread runs on the outer loop), so it is not tied to the response:
a dropped connection only ends that response's iteration; the answer runs on and is saved; only
``POST .../messages/{id}/cancel`` stops it, sent to any web process (:mod:`chat.cancellation`). Needs an ASGI server (daphne), as the socket does.
Comments (``: keep-alive``) go out every ``SSE_KEEPALIVE_SECONDS`` so proxies keep a quiet stream open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer

from chat import events
from chat import generation as chat_generation
from chat.models import Message
from chat.turns import Turn

EVENT_STREAM = "text/event-stream"
SSE_KEEPALIVE_SECONDS = 15.0
END_SUFFIX = ".end"


class EventStreamRenderer(BaseRenderer):
    """Lets DRF accept ``Accept: text/event-stream``; the stream itself is a ``StreamingHttpResponse``.

    Anything DRF renders with it (an error before the stream starts) is JSON: the view switches such
    answers to the JSON renderer (``ChatSessionViewSet.finalize_response``).
    """

    media_type = EVENT_STREAM
    format = "event-stream"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return json.dumps(data).encode()


def wants_event_stream(request: Any) -> bool:
    return getattr(getattr(request, "accepted_renderer", None), "media_type", None) == EVENT_STREAM


def event_id(event: dict[str, Any], *, length: int) -> str | None:
    """The SSE id of a chat event (see the module docstring); ``length``: characters delivered."""
    kind = event.get("type")
    if kind == "chat.start":
        return "0"
    if kind == "chat.token":
        return str(int(event.get("offset", 0)) + len(event.get("delta", "")))
    if kind == "chat.end":
        return f"{len(event.get('content') or '')}{END_SUFFIX}"
    if kind == "error":
        return f"{length}{END_SUFFIX}"
    return None


def parse_last_event_id(value: str | None) -> int:
    """The offset a ``Last-Event-ID`` resumes from (0 when absent or unreadable)."""
    head = (value or "").strip().split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def format_event(event: dict[str, Any], *, length: int = 0) -> bytes:
    lines = [f"event: {event.get('type', 'message')}"]
    ident = event_id(event, length=length)
    if ident is not None:
        lines.append(f"id: {ident}")
    lines.append("data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


async def _with_keepalive(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``stream``'s items, and None whenever it stays quiet for ``SSE_KEEPALIVE_SECONDS``.

    The pending ``__anext__`` is never cancelled by a keep-alive (that would end the stream); it is
    only when the response itself ends (the client went away), which closes ``stream``.
    """
    iterator = stream.__aiter__()
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=SSE_KEEPALIVE_SECONDS)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield item
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _encode(start: dict[str, Any], stream: AsyncIterator[Any], *, length: int = 0) -> AsyncIterator[bytes]:
    yield format_event(start)
    async for event in _with_keepalive(stream):
        if event is None:
            yield b": keep-alive\n\n"
            continue
        if event.get("type") == "chat.token":
            length = int(event.get("offset", 0)) + len(event.get("delta", ""))
        yield format_event(event, length=length)


async def _start(turn: Turn) -> AsyncGenerator[events.ChatEvent, None]:
    generation = chat_generation.start(turn)
    stream = generation.events(0)  # subscribed on the loop, from its first token
    await generation.joined()  # before the client knows its id: a cancel from any process finds it
    return stream


def start_on_server_loop(turn: Turn) -> AsyncGenerator[events.ChatEvent, None]:
    """From the view's thread: start the generation as a task on the server's event loop; its events."""
    return async_to_sync(_start)(turn)


def stream_new(stream: AsyncGenerator[events.ChatEvent, None], turn: Turn) -> AsyncIterator[bytes]:
    """A new answer's events: ``chat.start``, then everything up to ``chat.end``."""
    return _encode(dict(turn.start_event()), stream)


def stream_resumed(message: Message, offset: int) -> AsyncIterator[bytes]:
    """``chat.start`` (``resumed: true``), then everything after ``offset`` up to ``chat.end``."""
    start = events.chat_start(answer=message, session=message.session, resumed=True)
    return _encode(dict(start), chat_generation.observe(message, offset), length=offset)


def event_stream_response(chunks: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=f"{EVENT_STREAM}; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
