"""The chat WebSocket: ``/ws/chat/?token=<access token>``.

The consumer parses frames, authorises and hands off: questions go to :func:`chat.turns.prepare_turn`
(in a thread of :mod:`chat.db`), answers to :mod:`chat.generation` (on the event loop; resume and
staleness are decided there), and every event it sends is built by :mod:`chat.events`. Each
connection forwards at most one answer at a time, on a task of its own, so cancel and ping frames are
handled while it streams.

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

API keys (``integrations``) authenticate without putting the key in the URL: either offer the
subprotocols ``["documind", "apikey.<key>"]`` (``Sec-WebSocket-Protocol``; the server answers
``documind``, never echoing the key), or connect bare and send ``{"type": "auth", "api_key": "<key>"}``
as the first frame within ``CHAT_SOCKET_AUTH_SECONDS`` (answered by ``{"type": "auth.ok"}``). A key
needs the ``chat`` scope for ``chat.*`` frames (else an ``insufficient_scope`` error event); a key
revoked or expired while connected closes the socket with 4401 at its next frame.

Close codes: 4401 missing, bad, expired or revoked token or key (checked before every frame; a
password change, deactivation, role change, logout or logout-all closes open sockets at once);
4403 inactive user or tenant.
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
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import session_from_access_token
from accounts.tokens import access_session_problem
from chat import db, events, generation
from chat.selectors import AccountInactive, active_user_get, assistant_message_get
from chat.services import UNSET
from chat.turns import prepare_turn
from config.errors import Conflict, DomainError, NotFound, PayloadTooLarge, RateLimited, ValidationFailed
from config.request_id import new_request_id, reset_request_id, set_request_id
from health.metrics import record_socket
from integrations.keys import api_key_recheck, api_key_verify
from integrations.models import Scope
from tasks.events import user_group

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
FORBIDDEN_CODES = {"user_inactive", "tenant_inactive"}
SUBPROTOCOL = "documind"
KEY_SUBPROTOCOL_PREFIX = "apikey."
KEY_FRAMES = {"chat.message", "chat.cancel", "chat.resume"}  # need the ``chat`` scope


def max_frame_chars() -> int:
    return max(64 * 1024, settings.CHAT_MAX_MESSAGE_CHARS * 2 + 8192)


def _token(scope: dict[str, Any]) -> str | None:
    """The ``token`` query parameter: None when absent, ``""`` when present but empty."""
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True)
    values = query.get("token")
    return values[0] if values else None


def _subprotocol_key(scope: dict[str, Any]) -> str | None:
    for value in scope.get("subprotocols") or []:
        if value.startswith(KEY_SUBPROTOCOL_PREFIX):
            return value[len(KEY_SUBPROTOCOL_PREFIX) :]
    return None


def _auth_code(exc: AuthenticationFailed) -> str:
    """The reason code (simplejwt puts it under ``detail["code"]``, DRF in the detail's code)."""
    detail = exc.detail
    if isinstance(detail, dict) and "code" in detail:
        return str(detail["code"])
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else ""


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
    session: Any = None  # the access token's session (None for API key sockets)
    api_key: Any = None  # the integrations.APIKey when a key authenticated the socket
    awaiting_auth = False  # a bare connection waiting for its first-frame ``auth``
    auth_timer: asyncio.Task[None] | None = None
    closed_for: int | None = None  # the close code once the server closed this socket

    # --- connection --------------------------------------------------------------------------
    async def connect(self) -> None:
        """Authenticate (token, key subprotocol, or a first ``auth`` frame) before serving; join the group."""
        offered = self.scope.get("subprotocols") or []
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
        raw_key = _subprotocol_key(self.scope)
        token = _token(self.scope)
        if raw_key is None and token is None:
            # Wait for {"type": "auth", "api_key": ...}: keys never travel in URLs (logs, proxies).
            await self.accept(subprotocol=subprotocol)
            self.awaiting_auth = True
            self.auth_timer = asyncio.get_running_loop().create_task(self._auth_deadline())
            return
        try:
            if raw_key is not None:
                key = await db.run(api_key_verify, raw=raw_key)
                user = key.user
                user.tenant = key.tenant
                self.api_key = key
            else:
                self.session = await db.run(session_from_access_token, raw=token or "")
                user = self.session.user
        except AuthenticationFailed as exc:
            # Accept, then close: a close before the handshake completes reaches browsers as a bare 403.
            reason = _auth_code(exc)
            code = CLOSE_FORBIDDEN if reason in FORBIDDEN_CODES else CLOSE_UNAUTHENTICATED
            client = self.scope.get("client") or ("", 0)
            logger.warning("websocket_refused", extra={"reason": reason, "close_code": code, "client_ip": client[0]})
            await self.accept(subprotocol=subprotocol)
            await self.close(code=code)
            return
        await self._start(user)
        await self.accept(subprotocol=subprotocol)

    async def _start(self, user: Any) -> None:
        self.user, self.tenant = user, user.tenant
        self.group = user_group(user.pk)
        self.streaming_id: str | None = None  # the answer this connection streams
        self.forwarder: asyncio.Task[None] | None = None
        self.frame_times: deque[float] = deque()
        await self.channel_layer.group_add(self.group, self.channel_name)
        record_socket(delta=1)  # an authenticated socket (token or key); disconnect() takes it off

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.CHAT_SOCKET_AUTH_SECONDS)
        if self.awaiting_auth:
            self.awaiting_auth = False
            self.closed_for = CLOSE_UNAUTHENTICATED
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def _authenticate_frame(self, text_data: str | None) -> None:
        """The first frame of a bare connection: ``{"type": "auth", "api_key": ...}`` or a 4401 close."""
        self.awaiting_auth = False
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            frame = None
        raw = frame.get("api_key") if isinstance(frame, dict) and frame.get("type") == "auth" else None
        try:
            if not isinstance(raw, str):
                raise AuthenticationFailed("The first frame must be {'type': 'auth', 'api_key': ...}.")
            key = await db.run(api_key_verify, raw=raw)
        except AuthenticationFailed as exc:
            code = CLOSE_FORBIDDEN if _auth_code(exc) in FORBIDDEN_CODES else CLOSE_UNAUTHENTICATED
            self.closed_for = code
            await self.close(code=code)
            return
        user = key.user
        user.tenant = key.tenant
        self.api_key = key
        await self._start(user)
        await self.send_json({"type": "auth.ok", "scopes": list(key.scopes)})

    async def _key_live(self) -> bool:
        """A key socket's key is still usable (revoked or expired meanwhile: close 4401)."""
        try:
            self.api_key = await db.run(api_key_recheck, key_id=self.api_key.pk)
        except AuthenticationFailed:
            self.closed_for = CLOSE_UNAUTHENTICATED
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return False
        return True

    async def _check_key(self, frame_type: str) -> bool:
        """For key sockets: the ``chat`` scope for chat frames (an ``insufficient_scope`` error event)."""
        if self.api_key is None:
            return True
        if frame_type in KEY_FRAMES and not self.api_key.has_scope(Scope.CHAT):
            raise DomainError(
                "This API key lacks the 'chat' scope.", code="insufficient_scope", details={"required": "chat"}
            )
        return True

    async def disconnect(self, code: int) -> None:
        """Leave the group; an answer being generated carries on and is saved."""
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        if self.user is None:
            return
        record_socket(delta=-1)
        await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.forwarder is not None:
            self.forwarder.cancel()

    # --- frames ------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Parse and route one client frame; every failure becomes an ``error`` event."""
        if self.awaiting_auth:
            await self._authenticate_frame(text_data)
            return
        if self.user is None or self.closed_for:
            return
        if not await self._session_live():
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
            if handler is not None and not await self._check_key(frame["type"]):
                return
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
        event = events.error_event(exc.code, exc.message, exc.details)
        if reply_to is not None:
            event["reply_to"] = reply_to
        await self.send_json(event)

    async def _session_live(self) -> bool:
        """Whether the token (or API key) this socket opened with is still honoured; closes 4401
        (revoked) or 4403 when not."""
        if self.api_key is not None:
            return await self._key_live()
        problem = await db.run(
            access_session_problem,
            user_id=self.user.pk,
            token_version=self.session.token_version,
            family=self.session.family,
        )
        if problem is None:
            return True
        code = CLOSE_FORBIDDEN if problem in FORBIDDEN_CODES else CLOSE_UNAUTHENTICATED
        self.closed_for = code
        await self.close(code=code)
        return False

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
        return self.forwarder is not None and not self.forwarder.done()

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
        try:
            turn = await db.run(
                prepare_turn,
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
        started = generation.start(turn)
        self._stream(started.message_id, started.events(0))

    async def on_chat_cancel(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Stop the answer being generated on this connection (one generating in this process)."""
        message_id = frame.get("message_id")
        if (
            not self._busy()
            or (message_id and str(message_id) != self.streaming_id)
            or not generation.cancel(self.streaming_id)
        ):
            raise NotFound("No answer is being generated on this connection.", code="no_active_answer")

    async def on_chat_resume(self, frame: dict[str, Any], reply_to: Any) -> None:
        """Re-attach to an answer after a reconnect, from ``offset``."""
        offset = frame.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationFailed(
                "offset must be a non-negative integer.",
                details={"fields": {"offset": ["A non-negative integer is required."]}},
            )
        if self._busy():
            raise Conflict("An answer is already streaming on this connection.", code="generation_in_progress")
        if not await self._still_allowed():
            return
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

    async def auth_revoked(self, event: dict[str, Any]) -> None:
        """The user's tokens (all, or this sign-in's ``family``) were revoked: close with 4401."""
        if self.api_key is not None:  # a person's sign-ins, not this key's account
            return
        if self.closed_for or (event.get("family") and event["family"] != self.session.family):
            return
        self.closed_for = CLOSE_UNAUTHENTICATED
        await self.close(code=CLOSE_UNAUTHENTICATED)
