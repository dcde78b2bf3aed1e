"""The chat WebSocket: ``/ws/chat/?token=<access token>``.

The consumer parses frames, authorises and hands off: who may connect and keep going is decided by
:mod:`chat.socket_auth` (its base class); questions go to :func:`chat.turns.prepare_turn`, answers to
:mod:`chat.generation` (on the event loop; resume and staleness are decided there), and every event it
sends is built by :mod:`chat.events`. Each connection forwards at most one answer at a time, on a task
of its own, so cancel and ping frames are handled while it streams.

Where things run: everything here is a coroutine on the event loop except the database work, which
runs on a chat database thread (:func:`chat.db.run`): the token or key check before each frame, and
for a question that check, the fresh user and the whole turn preparation in one thread hop.

Client → server frames (JSON objects; an optional ``id`` is echoed as ``reply_to`` on errors and
``chat.start``):

``{"type": "chat.message", "content", "session_id"?, "project"?, "document_ids"?, "model"?}``
    Ask a question (a new session when ``session_id`` is absent). One answer at a time per
    connection. Replies: ``chat.start`` {message_id, question_id, session_id, session_title,
    created_session, model, resumed}, ``chat.token`` {message_id, delta, offset} (``offset``: where
    ``delta`` starts in the answer, in characters; one per model chunk, or the text of all the chunks
    waiting when the server fell behind with this socket), ``chat.end`` {message_id, session_id, status
    (completed|cancelled|failed), content, citations, usage, model, ttft_ms, total_ms, error?}.
    A failed answer sends an ``error`` event just before its ``chat.end``.
``{"type": "chat.cancel", "message_id"?}``
    Stop the answer streaming on this connection (asked on it, or resumed on it after a reconnect,
    whichever server process generates it: :mod:`chat.cancellation`); it is saved as ``cancelled``
    with the text said so far and ends with ``chat.end``. Not rate limited.
``{"type": "chat.resume", "message_id", "offset"?}``
    After a reconnect: re-attach to an answer of yours. The server sends ``chat.start`` with
    ``resumed: true``, one ``chat.token`` with everything after ``offset`` (default 0) said so far,
    then the live tokens and ``chat.end`` (at once when it already finished). Answers keep generating
    and are saved when their socket drops; one streaming in another server process is followed
    through the database (saved every ``CHAT_SAVE_INTERVAL_MS``).
``{"type": "ping"}`` → ``{"type": "pong"}``.

Server → client, besides the above: ``document.status`` and ``task.progress`` events of the user's
documents and tasks (:mod:`tasks.events`), and ``error`` events
``{"type": "error", "error": {"type", "message", "details", "request_id"}, "reply_to"?}`` for bad
frames (not JSON, not an object, unknown type, empty or oversized content, ids that are not yours:
``not_found``), ``rate_limited`` (``CHAT_SOCKET_MESSAGES_PER_MINUTE`` frames a minute per
connection), ``quota_exceeded`` (with ``details.retry_after``) and upstream failures. The connection
stays open after an error event.

API keys (``integrations``) authenticate without putting the key in the URL: either offer the
subprotocols ``["documind", "apikey.<key>"]`` (``Sec-WebSocket-Protocol``; the server answers
``documind``, never echoing the key), or connect bare and send ``{"type": "auth", "api_key": "<key>"}``
as the first frame within ``CHAT_SOCKET_AUTH_SECONDS`` (answered by ``{"type": "auth.ok"}``). A key
needs the ``chat`` scope for ``chat.*`` frames (else an ``insufficient_scope`` error event); a key
revoked while connected closes the socket with 4401 at once (and at its next frame, if that message
was lost), and so does its expiry.

Close codes: 4401 missing, bad, expired or revoked token or key (the session or key is checked before
every frame; a password change, deactivation, role change, logout or logout-all closes open sockets
at once; the socket also closes when the access token it opened with, or its key, expires: reconnect
with a fresh one and ``chat.resume``); 4403 inactive user or tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from django.conf import settings

from chat import cancellation, db, events, generation
from chat.selectors import assistant_message_get
from chat.services import UNSET
from chat.socket_auth import AuthenticatedSocket, close_code
from chat.turns import Turn, prepare_turn
from config.errors import (
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from config.request_id import new_request_id, reset_request_id, set_request_id
from health.metrics import record_socket
from tasks.events import user_group

logger = logging.getLogger(__name__)


def max_frame_chars() -> int:
    return max(64 * 1024, settings.CHAT_MAX_MESSAGE_CHARS * 2 + 8192)


def _optional_str(frame: dict[str, Any], key: str, max_length: int = 200) -> str | None:
    value = frame.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationFailed(f"{key} must be a string.", details={"fields": {key: ["Not a valid string."]}})
    return value


class ChatConsumer(AuthenticatedSocket):
    """One user's chat socket: authenticated in ``connect()`` (:mod:`chat.socket_auth`), no business logic."""

    checked = False  # this frame's token or key check passed (errors go only to live sockets)

    # --- connection --------------------------------------------------------------------------
    async def _start(self, user: Any) -> None:
        await super()._start(user)
        self.group = user_group(user.pk)
        self.streaming_id: str | None = None  # the answer this connection streams
        self.forwarder: asyncio.Task[None] | None = None
        self.frame_times: deque[float] = deque()
        await self.channel_layer.group_add(self.group, self.channel_name)
        record_socket(delta=1)  # an authenticated socket (token or key); disconnect() takes it off

    async def disconnect(self, code: int) -> None:
        """Leave the group; an answer being generated carries on and is saved (the socket's timers end
        with it: :meth:`chat.socket_auth.AuthenticatedSocket.__call__`)."""
        if self.user is None:
            return
        record_socket(delta=-1)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.forwarder is not None:
            self.forwarder.cancel()

    # --- frames ------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Check the socket is still honoured, then parse and route one client frame; every failure
        becomes an ``error`` event (a socket no longer honoured is closed instead)."""
        if self.awaiting_auth:
            await self._authenticate_frame(text_data)
            return
        if self.user is None or self.closed_for:
            return
        token = set_request_id(new_request_id())
        reply_to: Any = None
        self.checked = False
        try:
            frame = self._parse(text_data)
            if isinstance(frame.get("id"), (str, int)) and len(str(frame["id"])) <= 100:
                reply_to = frame["id"]
            if frame["type"] != "chat.cancel":
                self._count_frame()
            handler = self.frame_handlers.get(frame["type"])
            if handler is None:
                raise ValidationFailed(
                    f"Unknown frame type {frame['type'][:50]!r}.",
                    code="unknown_type",
                    details={"allowed": sorted(self.frame_handlers)},
                )
            self.check_scope(frame["type"])
            # A question checks in the thread hop that prepares it; other frames check here.
            if frame["type"] != "chat.message" and not await self._live():
                return
            await handler(self, frame, reply_to)
        except DomainError as exc:
            if await self._live():
                await self.send_error(exc, reply_to)
        except Exception:
            logger.exception("chat_frame_failed")
            if await self._live():
                await self.send_error(DomainError("An internal error occurred.", code="internal_error"), reply_to)
        finally:
            reset_request_id(token)

    async def _live(self) -> bool:
        """This frame's check (once): whether the socket is still honoured (else it is closed)."""
        if not self.checked and not self.closed_for:
            self.checked = await self.still_live()
        return self.checked

    def _parse(self, text_data: str | None) -> dict[str, Any]:
        """The frame as a JSON object with a string ``type``; malformed frames count against the limit."""
        if text_data is None:
            self._count_frame()
            raise ValidationFailed("Binary frames are not supported; send JSON text.", code="malformed_frame")
        if len(text_data) > max_frame_chars():
            self._count_frame()
            raise PayloadTooLarge(f"Frames are limited to {max_frame_chars()} characters.")
        try:
            frame = json.loads(text_data)
        except ValueError:
            frame = None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._count_frame()
            raise ValidationFailed("A frame is a JSON object with a string 'type'.", code="malformed_frame")
        return frame

    def _count_frame(self) -> None:
        """The per-connection rate limit (a sliding minute)."""
        limit = settings.CHAT_SOCKET_MESSAGES_PER_MINUTE
        now = time.monotonic()
        while self.frame_times and now - self.frame_times[0] >= 60:
            self.frame_times.popleft()
        if limit and len(self.frame_times) >= limit:
            retry_after = max(1, int(60 - (now - self.frame_times[0])) + 1)
            raise RateLimited(
                f"At most {limit} messages a minute on one connection.",
                details={"retry_after": retry_after, "limit": limit},
            )
        self.frame_times.append(now)

    async def send_error(self, exc: DomainError, reply_to: Any = None) -> None:
        event = events.error_event(exc.code, exc.message, exc.details)
        if reply_to is not None:
            event["reply_to"] = reply_to
        await self.send_json(event)

    def _busy(self) -> bool:
        return self.forwarder is not None and not self.forwarder.done()

    def _checked_turn(self, **kwargs: Any) -> Turn | str:
        """In a thread: the socket's check, then the turn for its fresh user; why it failed otherwise."""
        user, problem = self.live_user()
        if problem is not None:
            return problem
        self.checked = True
        return prepare_turn(tenant=user.tenant, user=user, **kwargs)

    async def on_chat_message(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Ask a question: ``chat.start``, then the generation streams on its own task."""
        if self._busy():
            raise Conflict(
                "An answer is already being generated on this connection; cancel it or wait for chat.end.",
                code="generation_in_progress",
            )
        received_at = time.monotonic()
        document_ids = frame.get("document_ids", UNSET)
        if document_ids is not UNSET and document_ids is not None and not isinstance(document_ids, list):
            raise ValidationFailed(
                "document_ids must be a list of ids.", details={"fields": {"document_ids": ["Expected a list."]}}
            )
        turn = await db.run(
            self._checked_turn,
            content=frame.get("content"),
            session_id=_optional_str(frame, "session_id"),
            project_id=_optional_str(frame, "project") if "project" in frame else UNSET,
            document_ids=document_ids,
            model=_optional_str(frame, "model"),
            received_at=received_at,
        )
        if isinstance(turn, str):
            await self.close_for(close_code(turn))
            return
        self.user, self.tenant = turn.user, turn.tenant
        started = generation.start(turn)
        stream = started.events(0)  # subscribed now: every token, each as it came
        await started.joined()  # before the client knows its id: a cancel from any process finds it
        start = turn.start_event()
        if reply_to is not None:
            start["reply_to"] = reply_to
        await self.send_json(start)
        self._stream(started.message_id, stream)

    async def on_chat_cancel(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Stop the answer streaming on this connection: asked here, or resumed here while another
        process generates it (the cancel goes to that process; this stream follows it to ``chat.end``)."""
        message_id = frame.get("message_id")
        if not self._busy() or (message_id and str(message_id) != self.streaming_id):
            raise NotFound("No answer is being generated on this connection.", code="no_active_answer")
        assert self.streaming_id is not None
        if not generation.cancel(self.streaming_id):
            try:
                await cancellation.send_cancel([self.streaming_id])
            except Exception as exc:
                raise ServiceUnavailable("The cancel could not be sent; retry soon.") from exc

    async def on_chat_resume(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Re-attach to an answer after a reconnect, from ``offset`` (the user was refreshed by the check)."""
        offset = frame.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationFailed(
                "offset must be a non-negative integer.",
                details={"fields": {"offset": ["A non-negative integer is required."]}},
            )
        if self._busy():
            raise Conflict("An answer is already streaming on this connection.", code="generation_in_progress")
        message = await db.run(
            assistant_message_get, tenant=self.tenant, user=self.user, message_id=frame.get("message_id")
        )
        start = events.chat_start(answer=message, session=message.session, resumed=True)
        if reply_to is not None:
            start["reply_to"] = reply_to
        await self.send_json(start)
        self._stream(str(message.pk), generation.observe(message, offset))

    async def on_ping(self, frame: dict[str, Any], reply_to: Any) -> None:
        await self.send_json({"type": "pong", **({"reply_to": reply_to} if reply_to is not None else {})})

    frame_handlers: dict[str, Callable[[ChatConsumer, dict[str, Any], Any], Awaitable[None]]] = {
        "chat.message": on_chat_message,
        "chat.cancel": on_chat_cancel,
        "chat.resume": on_chat_resume,
        "ping": on_ping,
    }

    # --- streaming to this socket ------------------------------------------------------------
    def _stream(self, message_id: str, stream: AsyncGenerator[events.ChatEvent, None]) -> None:
        """Forward ``stream`` (to its ``chat.end``) on a task of its own; frames keep being handled.

        A disconnect cancels the task, which closes the stream (unsubscribing); the answer goes on.
        """
        self.streaming_id = message_id

        async def forward() -> None:
            async with aclosing(stream):
                async for event in stream:
                    await self.send_json(event)

        self.forwarder = asyncio.get_running_loop().create_task(forward())

    # --- events from the user's group (one handler per type) ---------------------------------
    async def document_status(self, event: dict[str, Any]) -> None:
        """Forward a ``document.status`` event of one of the user's documents."""
        await self.send_json(event)

    async def task_progress(self, event: dict[str, Any]) -> None:
        """Forward a ``task.progress`` event of one of the user's tasks."""
        await self.send_json(event)
