"""API keys on the chat socket: subprotocol or first-frame auth, never the URL; scopes; revocation."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from chat import generation
from integrations.models import APIKey
from integrations.services import api_key_revoke
from tests.chat.conftest import HANDBOOK, make_ready_document

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"host", b"testserver"), (b"origin", b"http://testserver")]


@pytest.fixture
async def open_socket() -> Any:
    opened: list[WebsocketCommunicator] = []

    def make(path: str = "/ws/chat/", subprotocols: list[str] | None = None) -> WebsocketCommunicator:
        from config.asgi import application

        comm = WebsocketCommunicator(application, path, headers=HEADERS, subprotocols=subprotocols)
        opened.append(comm)
        return comm

    yield make
    await generation.drain(timeout=15)
    for comm in opened:
        with contextlib.suppress(Exception):
            await comm.disconnect()


async def _close_code(comm: WebsocketCommunicator, timeout: float = 5) -> int | None:
    output = await comm.receive_output(timeout=timeout)
    assert output["type"] == "websocket.close", output
    return output.get("code")


async def _ask(comm: WebsocketCommunicator, content: str = "How many vacation days do I get?") -> list[dict]:
    await comm.send_json_to({"type": "chat.message", "content": content})
    events = []
    while True:
        event = await comm.receive_json_from(timeout=15)
        events.append(event)
        if event["type"] in ("chat.end", "error"):
            return events


async def test_key_in_subprotocol_chats_and_the_key_is_not_echoed(open_socket: Any, make_key: Any) -> None:
    key, raw = await sync_to_async(make_key)(["chat"])
    await sync_to_async(make_ready_document)(tenant=key.tenant, owner=key.user, pages=HANDBOOK)
    comm = open_socket(subprotocols=["documind", f"apikey.{raw}"])
    ok, subprotocol = await comm.connect(timeout=10)
    assert ok and subprotocol == "documind"
    events = await _ask(comm)
    assert events[0]["type"] == "chat.start" and events[-1]["type"] == "chat.end"
    assert "twenty-five" in events[-1]["content"]


async def test_key_in_first_frame(open_socket: Any, make_key: Any) -> None:
    _, raw = await sync_to_async(make_key)(["chat"])
    comm = open_socket()
    ok, _ = await comm.connect(timeout=10)
    assert ok
    await comm.send_json_to({"type": "auth", "api_key": raw})
    assert await comm.receive_json_from(timeout=5) == {"type": "auth.ok", "scopes": ["chat"]}
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"


@pytest.mark.parametrize("frame", [{"type": "auth", "api_key": "dmk_0123456789ab_" + "A" * 43}, {"type": "ping"}])
async def test_bad_first_frame_closes_4401(open_socket: Any, frame: dict[str, Any]) -> None:
    comm = open_socket()
    await comm.connect(timeout=10)
    await comm.send_json_to(frame)
    assert await _close_code(comm) == 4401


async def test_key_in_query_string_is_not_accepted(open_socket: Any, make_key: Any) -> None:
    _, raw = await sync_to_async(make_key)(["chat"])
    for path in (f"/ws/chat/?api_key={raw}", f"/ws/chat/?token={raw}"):
        comm = open_socket(path)
        await comm.connect(timeout=10)
        assert await _close_code(comm) == 4401  # unauthenticated: waits for an auth frame, or a bad token


async def test_silent_bare_socket_is_closed_after_the_deadline(open_socket: Any) -> None:
    comm = open_socket()
    await comm.connect(timeout=10)
    assert await _close_code(comm, timeout=5) == 4401


async def test_bad_revoked_or_expired_key_in_subprotocol_closes_4401(open_socket: Any, make_key: Any) -> None:
    key, raw = await sync_to_async(make_key)(["chat"])
    await sync_to_async(api_key_revoke)(key=key)
    expired, expired_raw = await sync_to_async(make_key)(["chat"], expires_at=timezone.now() + timedelta(minutes=1))
    await sync_to_async(APIKey.objects.filter(pk=expired.pk).update)(expires_at=timezone.now() - timedelta(seconds=1))
    for value in (raw, expired_raw, "garbage"):
        comm = open_socket(subprotocols=[f"apikey.{value}"])
        await comm.connect(timeout=10)
        assert await _close_code(comm) == 4401


async def test_key_without_chat_scope_gets_insufficient_scope(open_socket: Any, make_key: Any) -> None:
    _, raw = await sync_to_async(make_key)(["documents:read"])
    comm = open_socket(subprotocols=[f"apikey.{raw}"])
    ok, _ = await comm.connect(timeout=10)
    assert ok
    for frame in (
        {"type": "chat.message", "content": "hi"},
        {"type": "chat.resume", "message_id": "x"},
        {"type": "chat.cancel"},
    ):
        await comm.send_json_to(frame)
        event = await comm.receive_json_from(timeout=5)
        assert event["type"] == "error" and event["error"]["type"] == "insufficient_scope", event
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"


async def test_key_revoked_while_connected_closes_at_next_frame(open_socket: Any, make_key: Any) -> None:
    """The per-frame re-check: revoked without any message to the socket (another process, a lost event)."""
    key, raw = await sync_to_async(make_key)(["chat"])
    comm = open_socket(subprotocols=[f"apikey.{raw}"])
    ok, _ = await comm.connect(timeout=10)
    assert ok
    await sync_to_async(APIKey.objects.filter(pk=key.pk).update)(revoked_at=timezone.now())
    await comm.send_json_to({"type": "chat.message", "content": "still there?"})
    assert await _close_code(comm) == 4401


@pytest.mark.parametrize("how", ["subprotocol", "first_frame"])
async def test_revoking_a_key_closes_its_open_sockets_at_once(open_socket: Any, make_key: Any, how: str) -> None:
    """Attack: keep a socket open on a key that was revoked; it closes with 4401 without another frame,
    and a socket of another key of the same tenant stays open."""
    key, raw = await sync_to_async(make_key)(["chat"])
    _, other_raw = await sync_to_async(make_key)(["chat"])
    if how == "subprotocol":
        comm = open_socket(subprotocols=[f"apikey.{raw}"])
        ok, _ = await comm.connect(timeout=10)
    else:
        comm = open_socket()
        ok, _ = await comm.connect(timeout=10)
        await comm.send_json_to({"type": "auth", "api_key": raw})
        assert (await comm.receive_json_from(timeout=5))["type"] == "auth.ok"
    assert ok
    other = open_socket(subprotocols=[f"apikey.{other_raw}"])
    assert (await other.connect(timeout=10))[0]
    await sync_to_async(api_key_revoke)(key=key)
    assert await _close_code(comm, timeout=10) == 4401
    await other.send_json_to({"type": "ping"})
    assert (await other.receive_json_from(timeout=5))["type"] == "pong"


async def test_a_key_socket_closes_when_the_key_expires(open_socket: Any, make_key: Any) -> None:
    _, raw = await sync_to_async(make_key)(["chat"], expires_at=timezone.now() + timedelta(seconds=5))
    comm = open_socket(subprotocols=[f"apikey.{raw}"])
    assert (await comm.connect(timeout=10))[0]
    await comm.send_json_to({"type": "ping"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "pong"
    assert await _close_code(comm, timeout=15) == 4401  # no frame sent: the expiry alone closes it
