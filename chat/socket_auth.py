"""Who is on a chat socket, and whether they still may be: the authentication half of :mod:`chat.consumers`.

:class:`AuthenticatedSocket` is the base of :class:`chat.consumers.ChatConsumer`. It authenticates in
``connect()`` before serving (an access token in ``?token=``, an API key offered as the subprotocol
``apikey.<key>``, or a bare connection whose first frame is ``{"type": "auth", "api_key": ...}``
within ``CHAT_SOCKET_AUTH_SECONDS``), re-checks the session or key before every frame, and closes with
4401 (missing, bad, expired or revoked) or 4403 (inactive user or tenant). Revoking a user's tokens or
an API key closes their open sockets at once (``auth.revoked`` to the user's group: a key's sockets
are its service account's), and a socket closes with 4401 when the access token it opened with, or
its key, expires: a stolen token does not outlive its lifetime on a socket, and clients reconnect
with a fresh token (an answer keeps generating; ``chat.resume`` picks it up). The protocol itself is
described in :mod:`chat.consumers`.

Where things run: the methods are coroutines on the event loop; each database check runs on a chat
database thread (:func:`chat.db.run`). :meth:`AuthenticatedSocket.live_user` is the synchronous check
(a thread calls it): one query gives the verdict and the fresh user with their tenant, and a question
runs it in the same thread hop as its turn preparation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import session_from_access_token
from accounts.tokens import access_session_user
from chat import db
from config.errors import DomainError
from integrations.keys import api_key_recheck, api_key_verify
from integrations.models import Scope

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
FORBIDDEN_CODES = {"user_inactive", "tenant_inactive"}
SUBPROTOCOL = "documind"
KEY_SUBPROTOCOL_PREFIX = "apikey."
KEY_FRAMES = {"chat.message", "chat.cancel", "chat.resume"}  # need the ``chat`` scope


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


def close_code(problem: str) -> int:
    """The close code for why a socket is refused (4403 for an inactive account, else 4401)."""
    return CLOSE_FORBIDDEN if problem in FORBIDDEN_CODES else CLOSE_UNAUTHENTICATED


class AuthenticatedSocket(AsyncJsonWebsocketConsumer):
    """A JSON socket that authenticates before serving (see the module docstring); subclasses join
    their groups in ``_start``."""

    user: Any = None
    tenant: Any = None
    session: Any = None  # the access token's session (None for API key sockets)
    api_key: Any = None  # the integrations.APIKey when a key authenticated the socket
    awaiting_auth = False  # a bare connection waiting for its first-frame ``auth``
    auth_timer: asyncio.Task[None] | None = None
    expiry_timer: asyncio.Task[None] | None = None  # closes the socket when its token or key expires
    closed_for: int | None = None  # the close code once the server closed this socket

    async def _start(self, user: Any) -> None:
        """Serve ``user`` (authenticated): the subclass joins its groups."""
        self.user, self.tenant = user, user.tenant

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
            code = close_code(reason)
            client = self.scope.get("client") or ("", 0)
            logger.warning("websocket_refused", extra={"reason": reason, "close_code": code, "client_ip": client[0]})
            await self.accept(subprotocol=subprotocol)
            await self.close(code=code)
            return
        await self._start(user)
        await self.accept(subprotocol=subprotocol)
        self._close_at_expiry()

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(settings.CHAT_SOCKET_AUTH_SECONDS)
        if self.awaiting_auth:
            self.awaiting_auth = False
            await self.close_for(CLOSE_UNAUTHENTICATED)

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
            await self.close_for(close_code(_auth_code(exc)))
            return
        user = key.user
        user.tenant = key.tenant
        self.api_key = key
        await self._start(user)
        await self.send_json({"type": "auth.ok", "scopes": list(key.scopes)})
        self._close_at_expiry()

    def _close_at_expiry(self) -> None:
        """Once serving: close with 4401 when the access token the socket opened with, or its key, expires."""
        if self.api_key is not None:
            expires = self.api_key.expires_at.timestamp() if self.api_key.expires_at is not None else None
        else:
            expires = self.session.expires_at
        if expires is not None:
            delay = max(0.0, expires - time.time())
            self.expiry_timer = asyncio.get_running_loop().create_task(self._expire_after(delay))

    async def _expire_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if not self.closed_for:
            await self.close_for(CLOSE_UNAUTHENTICATED)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve the socket; however it ends (a disconnect, an error in a handler), its timers end too."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            for timer in (self.auth_timer, self.expiry_timer):
                if timer is not None:
                    timer.cancel()

    def check_scope(self, frame_type: str) -> None:
        """For key sockets: the ``chat`` scope for chat frames (an ``insufficient_scope`` error event)."""
        if self.api_key is not None and frame_type in KEY_FRAMES and not self.api_key.has_scope(Scope.CHAT):
            raise DomainError(
                "This API key lacks the 'chat' scope.", code="insufficient_scope", details={"required": "chat"}
            )

    def live_user(self) -> tuple[Any, str | None]:
        """In a thread: (the user, fresh with their tenant, or None; why the socket is no longer honoured).

        One query either way: a token socket's session check, or a key socket's key re-read with its
        account and tenant (revoked, expired or inactive meanwhile: 4401)."""
        if self.api_key is None:
            session = self.session
            return access_session_user(user_id=self.user.pk, token_version=session.token_version, family=session.family)
        try:
            key = api_key_recheck(key_id=self.api_key.pk)
        except AuthenticationFailed:
            return None, "api_key_revoked"
        self.api_key, user = key, key.user
        user.tenant = key.tenant
        return user, None

    async def still_live(self) -> bool:
        """Whether the token (or key) this socket opened with is still honoured and its account active;
        refreshes ``user`` and ``tenant`` (tenant settings, role), or closes (4401, 4403) and says no."""
        user, problem = await db.run(self.live_user)
        if problem is not None:
            await self.close_for(close_code(problem))
            return False
        self.user, self.tenant = user, user.tenant
        return True

    async def close_for(self, code: int) -> None:
        """Close with ``code``; frames arriving meanwhile are ignored."""
        self.closed_for = code
        await self.close(code=code)

    async def auth_revoked(self, event: dict[str, Any]) -> None:
        """The user's tokens (all, or this sign-in's ``family``) were revoked, or the API key whose
        service account this socket acts as: close with 4401."""
        if self.closed_for:
            return
        if self.api_key is None and event.get("family") and event["family"] != self.session.family:
            return
        await self.close_for(CLOSE_UNAUTHENTICATED)
