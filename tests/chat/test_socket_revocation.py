"""Attack: keep a chat socket open after the session ended (password changed, signed out everywhere).

The socket is told through the user's channel group and closes with 4401 at once; a frame sent on
a socket whose token is no longer honoured also closes it (the per-frame check), even if that
message was lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from accounts.models import User
from accounts.tokens import family_revoke, tokens_for_user, user_revoke_tokens
from tests.chat.conftest import Socket

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(sockets: Any, user: User) -> tuple[Socket, str]:
    tokens = await sync_to_async(tokens_for_user)(user)
    socket = sockets(token=tokens["access"])
    ok, _ = await socket.connect()
    assert ok
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"
    return socket, tokens["refresh"]


async def test_revoking_a_users_tokens_closes_their_sockets_at_once(sockets: Any, user: User) -> None:
    first, _ = await open_socket(sockets, user)
    second, _ = await open_socket(sockets, user)
    await sync_to_async(user_revoke_tokens)(user=user)  # what password change, deactivation, logout-all do
    assert await first.closed_with(timeout=10) == 4401
    assert await second.closed_with(timeout=10) == 4401


async def test_a_frame_on_a_revoked_session_closes_the_socket(sockets: Any, user: User) -> None:
    socket, _ = await open_socket(sockets, user)
    # The version moves on without any message to the socket (another process, a lost event).
    await sync_to_async(User.objects.filter(pk=user.pk).update)(token_version=user.token_version + 1)
    await socket.send({"type": "ping"})
    assert await socket.closed_with() == 4401


async def test_logging_out_one_sign_in_closes_only_its_sockets(sockets: Any, user: User) -> None:
    from rest_framework_simplejwt.tokens import AccessToken

    mine, _ = await open_socket(sockets, user)
    other, _ = await open_socket(sockets, user)
    token = mine.comm.scope["query_string"].decode().split("token=", 1)[1]
    family = AccessToken(token)["fam"]
    await sync_to_async(family_revoke)(user=user, family_id=family, reason="logout")
    assert await mine.closed_with(timeout=10) == 4401
    await other.send({"type": "ping"})
    assert (await other.recv())["type"] == "pong"


async def test_a_socket_closes_when_the_access_token_it_opened_with_expires(sockets: Any, user: User) -> None:
    """Attack: open a socket with a stolen access token just before it expires and keep it: the socket
    ends with the token (4401), without any frame; the client reconnects with a fresh one."""
    from datetime import timedelta

    from rest_framework_simplejwt.tokens import AccessToken

    token = AccessToken((await sync_to_async(tokens_for_user)(user))["access"])
    token.set_exp(lifetime=timedelta(seconds=5))
    socket = sockets(token=str(token))
    ok, _ = await socket.connect()
    assert ok
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"
    assert await socket.closed_with(timeout=15) == 4401


def _expiry_timers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__name__", "") == "_expire_after" and not t.done()]


async def test_a_socket_that_ends_leaves_no_expiry_timer_behind(sockets: Any, user: User) -> None:
    """Each socket waits for its token's expiry; when it ends first, so does the wait (one per socket
    would otherwise live for the token's lifetime, or a key's)."""
    before = len(_expiry_timers())
    socket, _ = await open_socket(sockets, user)
    assert len(_expiry_timers()) == before + 1
    await socket.comm.disconnect()
    for _ in range(50):
        if len(_expiry_timers()) == before:
            break
        await asyncio.sleep(0.02)
    assert len(_expiry_timers()) == before
