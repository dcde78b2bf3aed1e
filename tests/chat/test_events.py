"""Chat events are built once (``chat.events``): the live stream and a resumed one say the same thing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chat.conftest import connected, tokens_text

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_finished_answer_resumed_later_ends_exactly_as_it_ended_live(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    openai_chat.reply = "Employees get twenty-five days [1]."
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "How many vacation days?"})
    live_start = await socket.recv()
    live = await socket.recv_until("chat.end")

    # the generation is over: the resumed stream is rebuilt from the saved row
    again = await connected(sockets, user)
    await again.send({"type": "chat.resume", "message_id": live_start["message_id"], "offset": 0})
    resumed_start = await again.recv()
    resumed = await again.recv_until("chat.end")

    assert set(resumed_start) == set(live_start)
    shared = ("type", "message_id", "session_id", "session_title", "model")
    assert {k: resumed_start[k] for k in shared} == {k: live_start[k] for k in shared}
    assert (live_start["resumed"], resumed_start["resumed"]) == (False, True)
    assert tokens_text(resumed) == tokens_text(live) == openai_chat.reply
    assert resumed[-1] == live[-1]  # chat.end: same keys, same values


async def test_a_failed_answer_ends_with_the_same_error_and_end_live_and_resumed(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    openai_chat.set_fault("server_error", endpoint="chat")
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "How many vacation days?"})
    start = await socket.recv()
    live = await socket.recv_until("chat.end")

    again = await connected(sockets, user)
    await again.send({"type": "chat.resume", "message_id": start["message_id"], "offset": 0})
    await again.recv()
    resumed = await again.recv_until("chat.end")

    assert [e["type"] for e in live][-2:] == [e["type"] for e in resumed][-2:] == ["error", "chat.end"]
    assert resumed[-1] == live[-1]
    live_error, resumed_error = live[-2]["error"], resumed[-2]["error"]
    assert (resumed_error["type"], resumed_error["message"]) == (live_error["type"], live_error["message"])
    assert resumed_error["details"]["message_id"] == live_error["details"]["message_id"] == start["message_id"]
