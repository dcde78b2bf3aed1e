"""The chat WebSocket: ``/ws/chat/?token=<access token>``.

Client → server frames (JSON objects; an optional ``id`` is echoed as ``reply_to`` on errors and
``chat.start``):

``{"type": "chat.message", "content", "session_id"?, "project"?, "document_ids"?, "model"?}``
    Ask a question (a new session when ``session_id`` is absent). One answer at a time per
    connection. Replies: ``chat.start`` {message_id, question_id, session_id, session_title,
    created_session, model, resumed}, ``chat.token`` {message_id, delta, offset} (``offset``: where
    ``delta`` starts in the answer, in characters), ``chat.end`` {message_id, session_id, status
    (completed|cancelled|failed), content, citations, usage, model, ttft_ms, total_ms, error?}.
    A failed answer sends an ``error`` event just before its ``chat.end``.
``{"type": "chat.cancel", "message_id"?}``
    Stop the answer being generated on this connection; it is saved as ``cancelled`` and ends with
    ``chat.end``. Not rate limited.
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

Close codes: 4401 missing, bad or expired token; 4403 inactive user or tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import user_from_access_token
from chat import answering, db
from chat.models import Message
from chat.selectors import AccountInactive, active_user_get, assistant_message_get
from chat.services import UNSET, message_mark_interrupted
from config.errors import Conflict, DomainError, NotFound, PayloadTooLarge, RateLimited, ValidationFailed, envelope
from config.request_id import new_request_id, reset_request_id, set_request_id
from tasks.events import user_group

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
FORBIDDEN_CODES = {"user_inactive", "tenant_inactive"}
RESUME_POLL_SECONDS = 0.25


def max_frame_chars() -> int:
    return max(64 * 1024, settings.CHAT_MAX_MESSAGE_CHARS * 2 + 8192)


def _token(scope: dict[str, Any]) -> str:
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
    return (query.get("token") or [""])[0]


def _auth_code(exc: AuthenticationFailed) -> str:
    """The reason code (simplejwt puts it under ``detail["code"]``, DRF in the detail's code)."""
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail:
        return str(detail["code"])
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else ""


def start_event_for(message: Message, *, resumed: bool = True) -> dict[str, Any]:
    return {
        "type": "chat.start",
        "message_id": str(message.pk),
        "question_id": None,
        "session_id": str(message.session_id),
        "session_title": message.session.title,
        "created_session": False,
        "model": message.model,
        "resumed": resumed,
    }


def final_events_for(message: Message) -> list[dict[str, Any]]:
    """The ``error`` (when it failed) and ``chat.end`` events of a finished answer, from the database."""
    events: list[dict[str, Any]] = []
    if message.status == Message.Status.FAILED and message.error:
        events.append(
            {
                "type": "error",
                **envelope(
                    message.error.get("type", "upstream_error"),
                    message.error.get("message", ""),
                    {"message_id": str(message.pk)},
                ),
            }
        )
    events.append(
        {
            "type": "chat.end",
            "message_id": str(message.pk),
            "session_id": str(message.session_id),
            "status": message.status,
            "content": message.content,
            "citations": message.citations,
            "usage": {
                "prompt_tokens": message.prompt_tokens,
                "completion_tokens": message.completion_tokens,
                "total_tokens": message.prompt_tokens + message.completion_tokens,
            },
            "model": message.model,
            "ttft_ms": message.ttft_ms,
            "total_ms": message.total_ms,
            **({"error": message.error} if message.error else {}),
        }
    )
    return events


def _reload_message(*, message_id: Any) -> Message:
    return Message.objects.select_related("session").get(pk=message_id)


def _optional_str(frame: dict[str, Any], key: str, max_length: int = 200) -> str | None:
    value = frame.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationFailed(f"{key} must be a string.", details={"fields": {key: ["Not a valid string."]}})
    return value


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One user's chat socket: authenticated in ``connect()``, no business logic of its own."""

    user: Any = None
    closed_for: int | None = None  # the close code once the server closed this socket

    # --- connection --------------------------------------------------------------------------
    async def connect(self) -> None:
        """Authenticate the ``token`` query parameter before accepting; join the user's event group."""
        try:
            user = await db.run(user_from_access_token, raw=_token(self.scope))
        except AuthenticationFailed as exc:
            # Accept, then close: a close before the handshake completes reaches browsers as a bare 403.
            reason = _auth_code(exc)
            code = CLOSE_FORBIDDEN if reason in FORBIDDEN_CODES else CLOSE_UNAUTHENTICATED
            client = self.scope.get("client") or ("", 0)
            logger.warning("websocket_refused", extra={"reason": reason, "close_code": code, "client_ip": client[0]})
            await self.accept()
            await self.close(code=code)
            return
        self.user, self.tenant = user, user.tenant
        self.group = user_group(user.pk)
        self.generation: answering.Generation | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self.frame_times: deque[float] = deque()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the group; an answer being generated carries on and is saved."""
        if self.user is None:
            return
        await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.forwarder is not None:
            self.forwarder.cancel()

    # --- frames ------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Parse and route one client frame; every failure becomes an ``error`` event."""
        if self.user is None or self.closed_for:
            return
        token = set_request_id(new_request_id())
        reply_to = None
        try:
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
            await handler(self, frame, reply_to)
        except DomainError as exc:
            await self.send_error(exc, reply_to)
        except Exception:
            logger.exception("chat_frame_failed")
            await self.send_error(DomainError("An internal error occurred.", code="internal_error"), reply_to)
        finally:
            reset_request_id(token)

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
        event = {"type": "error", **envelope(exc.code, exc.message, exc.details)}
        if reply_to is not None:
            event["reply_to"] = reply_to
        await self.send_json(event)

    async def _close_forbidden(self) -> None:
        self.closed_for = CLOSE_FORBIDDEN
        await self.close(code=CLOSE_FORBIDDEN)

    async def _still_allowed(self) -> bool:
        """Reload the user and tenant (active flags, tenant settings) before work; close 4403 if deactivated."""
        try:
            user = await db.run(active_user_get, user_id=self.user.pk)
        except AccountInactive:
            await self._close_forbidden()
            return False
        self.user, self.tenant = user, user.tenant
        return True

    def _busy(self) -> bool:
        return self.generation is not None and not self.generation.done.is_set()

    async def on_chat_message(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Ask a question: ``chat.start``, then the generation streams on its own task."""
        if self._busy() or (self.forwarder is not None and not self.forwarder.done()):
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
        try:
            turn = await db.run(
                answering.prepare_turn,
                tenant=self.tenant,
                user=self.user,
                content=frame.get("content"),
                session_id=_optional_str(frame, "session_id"),
                project_id=_optional_str(frame, "project") if "project" in frame else UNSET,
                document_ids=document_ids,
                model=_optional_str(frame, "model"),
                refresh_user=True,  # deactivation and new tenant settings apply to open sockets
                received_at=received_at,
            )
        except AccountInactive:
            await self._close_forbidden()
            return
        self.user, self.tenant = turn.user, turn.tenant
        start = turn.start_event()
        if reply_to is not None:
            start["reply_to"] = reply_to
        await self.send_json(start)
        self._attach(answering.start_generation(turn), 0)

    async def on_chat_cancel(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Stop the answer being generated on this connection."""
        message_id = frame.get("message_id")
        generation = self.generation
        if not self._busy() or (message_id and str(message_id) != generation.message_id):  # type: ignore[union-attr]
            raise NotFound("No answer is being generated on this connection.", code="no_active_answer")
        generation.cancel()  # type: ignore[union-attr]

    async def on_chat_resume(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Re-attach to an answer after a reconnect, from ``offset``."""
        offset = frame.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationFailed(
                "offset must be a non-negative integer.",
                details={"fields": {"offset": ["A non-negative integer is required."]}},
            )
        if self._busy() or (self.forwarder is not None and not self.forwarder.done()):
            raise Conflict("An answer is already streaming on this connection.", code="generation_in_progress")
        if not await self._still_allowed():
            return
        message = await db.run(
            assistant_message_get, tenant=self.tenant, user=self.user, message_id=frame.get("message_id")
        )
        start = start_event_for(message)
        if reply_to is not None:
            start["reply_to"] = reply_to
        generation = answering.active_generation(message.pk)
        if generation is not None:
            await self.send_json(start)
            self._attach(generation, offset)
            return
        await self.send_json(start)
        self.forwarder = asyncio.get_running_loop().create_task(self._follow_saved(message, offset))

    async def on_ping(self, frame: dict[str, Any], reply_to: Any) -> None:
        await self.send_json({"type": "pong", **({"reply_to": reply_to} if reply_to is not None else {})})

    frame_handlers: dict[str, Callable[[ChatConsumer, dict[str, Any], Any], Awaitable[None]]] = {
        "chat.message": on_chat_message,
        "chat.cancel": on_chat_cancel,
        "chat.resume": on_chat_resume,
        "ping": on_ping,
    }

    # --- streaming to this socket ------------------------------------------------------------
    def _attach(self, generation: answering.Generation, offset: int) -> None:
        self.generation = generation
        queue = generation.subscribe(offset)
        self.forwarder = asyncio.get_running_loop().create_task(self._forward(generation, queue))

    async def _forward(self, generation: answering.Generation, queue: asyncio.Queue[dict[str, Any]]) -> None:
        try:
            while True:
                event = await queue.get()
                await self.send_json(event)
                if event["type"] == "chat.end":
                    return
        finally:
            generation.unsubscribe(queue)

    async def _follow_saved(self, message: Message, offset: int) -> None:
        """Resume an answer this process does not generate: replay and follow what is saved."""
        sent = min(offset, len(message.content))
        while True:
            if len(message.content) > sent:
                await self.send_json(
                    {
                        "type": "chat.token",
                        "message_id": str(message.pk),
                        "delta": message.content[sent:],
                        "offset": sent,
                    }
                )
                sent = len(message.content)
            if message.status != Message.Status.STREAMING:
                for event in final_events_for(message):
                    await self.send_json(event)
                return
            stale = (time.time() - message.updated_at.timestamp()) > settings.CHAT_STALE_STREAM_SECONDS
            if stale and answering.active_generation(message.pk) is None:
                await db.run(message_mark_interrupted, message_id=message.pk)
            else:
                await asyncio.sleep(RESUME_POLL_SECONDS)
            message = await db.run(_reload_message, message_id=message.pk)

    # --- events from the user's group (one handler per type) ---------------------------------
    async def document_status(self, event: dict[str, Any]) -> None:
        """Forward a ``document.status`` event of one of the user's documents."""
        await self.send_json(event)

    async def task_progress(self, event: dict[str, Any]) -> None:
        """Forward a ``task.progress`` event of one of the user's tasks."""
        await self.send_json(event)
