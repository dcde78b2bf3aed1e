"""The chat WebSocket on ``config.asgi.application``: auth, every frame type, bad frames, events, resume."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from chat import generation as chat_generation
from chat.models import ChatSession, Message
from chat.turns import prepare_turn
from tasks.events import apublish, document_status_event, task_progress_event
from tenants.models import UsageRecord
from tests.chat.conftest import access_token, connected, make_ready_document, tokens_text
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


# --- authentication --------------------------------------------------------------------------


async def test_connect_without_or_with_bad_token_closes_4401(sockets: Any, user: Any) -> None:
    for token in (None, "", "not-a-jwt"):
        socket = sockets(token=token)
        ok, _ = await socket.connect()
        assert ok  # accepted only to deliver the close code
        assert await socket.closed_with() == 4401


async def test_expired_token_closes_4401(sockets: Any, user: Any) -> None:
    token = AccessToken.for_user(user)
    token["tenant"] = str(user.tenant_id)
    token.set_exp(lifetime=-timedelta(minutes=1))
    socket = sockets(token=str(token))
    await socket.connect()
    assert await socket.closed_with() == 4401


async def test_inactive_user_or_tenant_closes_4403(sockets: Any, user: Any, tenant: Any) -> None:
    token = access_token(user)
    await sync_to_async(type(user).objects.filter(pk=user.pk).update)(is_active=False)
    socket = sockets(token=token)
    await socket.connect()
    assert await socket.closed_with() == 4403

    other = await sync_to_async(UserFactory)(tenant=tenant, email="second@acme.test")
    token = access_token(other)
    await sync_to_async(type(tenant).objects.filter(pk=tenant.pk).update)(is_active=False)
    socket = sockets(token=token)
    await socket.connect()
    assert await socket.closed_with() == 4403


async def test_foreign_origin_is_refused(sockets: Any, user: Any) -> None:
    socket = sockets(user, origin=b"http://evil.example")
    ok, _ = await socket.connect()
    assert not ok


# --- asking ----------------------------------------------------------------------------------


async def test_extractive_answer_streams_with_citations(sockets: Any, user: Any, handbook: Any) -> None:
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "How many vacation days do employees get?", "id": "q1"})
    start = await socket.recv()
    assert start["type"] == "chat.start" and start["reply_to"] == "q1"
    assert start["created_session"] is True and start["session_title"] == "How many vacation days do employees get?"
    events = await socket.recv_until("chat.end")
    end = events[-1]
    tokens = [e for e in events if e["type"] == "chat.token"]
    assert len(tokens) > 3
    assert all(t["message_id"] == start["message_id"] for t in tokens)
    offsets = [t["offset"] for t in tokens]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert tokens_text(events) == end["content"]
    assert end["status"] == "completed"
    assert "No language model is configured" in end["content"]
    assert "twenty-five days of paid vacation" in end["content"]
    [citation] = end["citations"]
    assert citation["document_id"] == str(handbook.pk)
    assert citation["document_title"] == "Employee Handbook"
    assert citation["page_start"] <= 2 <= citation["page_end"]
    assert end["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    answer = await Message.objects.aget(pk=end["message_id"])
    assert answer.status == "completed" and answer.content == end["content"]
    assert answer.citations == end["citations"] and answer.ttft_ms is not None and answer.total_ms >= answer.ttft_ms
    session = await ChatSession.objects.aget(pk=start["session_id"])
    assert session.user_id == user.pk
    assert await Message.objects.filter(session=session).acount() == 2

    # a second question in the same session; the socket stays usable
    await socket.send({"type": "chat.message", "session_id": start["session_id"], "content": "What about laptops?"})
    second = await socket.recv()
    assert second["type"] == "chat.start" and second["session_id"] == start["session_id"]
    assert second["created_session"] is False
    end2 = (await socket.recv_until("chat.end"))[-1]
    assert "encryption" in end2["content"]
    assert end2["citations"][0]["page_start"] == 3


async def test_openai_answer_streams_usage_and_maps_citations(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    openai_chat.reply = "Employees get twenty-five days [1]. Ask two weeks ahead [1][7]."
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "How many vacation days?"})
    start = await socket.recv()
    assert start["model"] == "gpt-4o-mini"
    events = await socket.recv_until("chat.end")
    end = events[-1]
    assert end["content"] == openai_chat.reply
    assert tokens_text(events) == openai_chat.reply
    assert len([e for e in events if e["type"] == "chat.token"]) == len(openai_chat.reply.split())
    # [7] does not exist: only [1] is a citation
    assert [c["n"] for c in end["citations"]] == [1]
    assert end["citations"][0]["document_id"] == str(handbook.pk)
    sent = openai_chat.usage_sent[-1]
    assert end["usage"] == {
        "prompt_tokens": sent["prompt_tokens"],
        "completion_tokens": sent["completion_tokens"],
        "total_tokens": sent["total_tokens"],
    }

    [request] = openai_chat.requests_to("chat")
    body = request.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-4o-mini"
    system = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "system"
    assert "[1] Employee Handbook" in system and "twenty-five days" in system
    assert "cite" in system.lower() and "same language" in system
    assert body["messages"][-1] == {"role": "user", "content": "How many vacation days?"}
    assert request.headers["authorization"] == "Bearer sk-test"

    # the quota reservation was reconciled with the real counts
    record = await UsageRecord.objects.filter(kind="chat", user=user).alatest("created_at")
    assert (record.prompt_tokens, record.completion_tokens) == (sent["prompt_tokens"], sent["completion_tokens"])
    answer = await Message.objects.aget(pk=end["message_id"])
    assert (answer.prompt_tokens, answer.completion_tokens) == (sent["prompt_tokens"], sent["completion_tokens"])

    # history goes into the next prompt
    await socket.send({"type": "chat.message", "session_id": start["session_id"], "content": "And sick days?"})
    await socket.recv_until("chat.end")
    body = openai_chat.requests_to("chat")[-1].body
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][1]["content"] == "How many vacation days?"


# --- bad frames --------------------------------------------------------------------------------


async def _error(socket: Any) -> dict[str, Any]:
    event = await socket.recv()
    assert event["type"] == "error", event
    error = event["error"]
    assert {"type", "message", "details", "request_id"} <= set(error) and error["request_id"]
    return event


async def test_bad_frames_get_error_events_and_the_socket_stays_usable(
    sockets: Any, user: Any, tenant: Any, other_user: Any, handbook: Any, settings: Any
) -> None:
    from documents.models import Project

    settings.CHAT_MAX_MESSAGE_CHARS = 100
    settings.CHAT_SOCKET_MESSAGES_PER_MINUTE = 100
    other_tenant = other_user.tenant
    foreign_doc = await sync_to_async(make_ready_document)(
        tenant=other_tenant, owner=other_user, pages=["Globex secrets."]
    )
    foreign_project = await Project.objects.acreate(tenant=other_tenant, name="Globex project")
    foreign_session = await ChatSession.objects.acreate(tenant=other_tenant, user=other_user, title="theirs")
    colleague = await sync_to_async(UserFactory)(tenant=tenant, email="colleague@acme.test")
    colleague_session = await ChatSession.objects.acreate(tenant=tenant, user=colleague, title="colleague's")

    socket = await connected(sockets, user)
    cases: list[tuple[Any, str]] = [
        ("this is not json", "malformed_frame"),
        ("[1, 2, 3]", "malformed_frame"),
        ({"content": "no type"}, "malformed_frame"),
        ({"type": 42}, "malformed_frame"),
        ({"type": "chat.explode"}, "unknown_type"),
        ({"type": "chat.message"}, "validation_error"),
        ({"type": "chat.message", "content": "   "}, "validation_error"),
        ({"type": "chat.message", "content": 123}, "validation_error"),
        ({"type": "chat.message", "content": "x" * 101}, "validation_error"),
        ({"type": "chat.message", "content": "hi", "document_ids": "not-a-list"}, "validation_error"),
        ({"type": "chat.message", "content": "hi", "session_id": str(foreign_session.pk)}, "not_found"),
        ({"type": "chat.message", "content": "hi", "session_id": str(colleague_session.pk)}, "not_found"),
        ({"type": "chat.message", "content": "hi", "session_id": "not-a-uuid"}, "not_found"),
        ({"type": "chat.message", "content": "hi", "document_ids": [str(foreign_doc.pk)]}, "not_found"),
        ({"type": "chat.message", "content": "hi", "document_ids": [str(handbook.pk), "nope"]}, "not_found"),
        ({"type": "chat.message", "content": "hi", "project": str(foreign_project.pk)}, "not_found"),
        ({"type": "chat.message", "content": "hi", "model": "gpt-9-ultra"}, "model_not_allowed"),
        ({"type": "chat.cancel"}, "no_active_answer"),
        ({"type": "chat.resume"}, "not_found"),
    ]
    for frame, code in cases:
        await socket.send(frame)
        event = await _error(socket)
        assert event["error"]["type"] == code, (frame, event)
    # frames larger than the frame limit are refused before parsing
    await socket.send('{"type": "chat.message", "content": "' + "y" * 70_000 + '"}')
    assert (await _error(socket))["error"]["type"] == "payload_too_large"
    await socket.comm.send_to(bytes_data=b"\x00\x01")
    assert (await _error(socket))["error"]["type"] == "malformed_frame"
    # the error names the other tenant's ids as missing, and nothing was saved
    assert await Message.objects.acount() == 0
    # still usable
    await socket.send({"type": "ping", "id": 7})
    assert await socket.recv() == {"type": "pong", "reply_to": 7}
    await socket.send({"type": "chat.message", "content": "How many vacation days?", "id": "ok"})
    assert (await socket.recv())["type"] == "chat.start"
    assert (await socket.recv_until("chat.end"))[-1]["status"] == "completed"


async def test_error_events_echo_the_frame_id(sockets: Any, user: Any) -> None:
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "", "id": "abc"})
    event = await _error(socket)
    assert event["reply_to"] == "abc"
    assert event["error"]["details"]["fields"]["content"]


async def test_rate_limit_per_connection(sockets: Any, user: Any, settings: Any) -> None:
    settings.CHAT_SOCKET_MESSAGES_PER_MINUTE = 3
    socket = await connected(sockets, user)
    for _ in range(3):
        await socket.send({"type": "ping"})
        assert (await socket.recv())["type"] == "pong"
    await socket.send({"type": "ping"})
    event = await _error(socket)
    assert event["error"]["type"] == "rate_limited"
    assert 1 <= event["error"]["details"]["retry_after"] <= 61
    # garbage counts too; cancel does not (it must always get through)
    await socket.send("garbage")
    assert (await _error(socket))["error"]["type"] == "rate_limited"
    await socket.send({"type": "chat.cancel"})
    assert (await _error(socket))["error"]["type"] == "no_active_answer"
    # another connection has its own budget
    other = await connected(sockets, user)
    await other.send({"type": "ping"})
    assert (await other.recv())["type"] == "pong"


# --- one at a time, cancel, reconnect --------------------------------------------------------


async def test_one_generation_at_a_time_then_cancel(sockets: Any, user: Any, handbook: Any, openai_chat: Any) -> None:
    openai_chat.reply = " ".join(f"word{i}" for i in range(200)) + " [1]"
    openai_chat.token_delay = 0.02
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "Tell me about vacation"})
    start = await socket.recv()
    first = await socket.recv()
    assert first["type"] == "chat.token"
    await socket.send({"type": "chat.message", "content": "Another one"})
    busy = None
    while busy is None:
        event = await socket.recv()
        if event["type"] == "error":
            busy = event
    assert busy["error"]["type"] == "generation_in_progress"
    await socket.send({"type": "chat.cancel", "message_id": "someone-else"})
    assert (await socket.recv_until("error"))[-1]["error"]["type"] == "no_active_answer"
    await socket.send({"type": "chat.cancel", "message_id": start["message_id"]})
    events = await socket.recv_until("chat.end")
    end = events[-1]
    assert end["status"] == "cancelled"
    assert 0 < len(end["content"]) < len(openai_chat.reply)
    assert end["citations"] == []
    answer = await Message.objects.aget(pk=start["message_id"])
    assert answer.status == "cancelled" and answer.content == end["content"]
    # usage of a cancelled answer is counted from what was generated (no usage chunk arrived)
    assert answer.completion_tokens > 0 and answer.prompt_tokens > 0
    # the connection is free again
    openai_chat.token_delay = 0
    openai_chat.reply = "Short [1]."
    await socket.send({"type": "chat.message", "content": "Vacation again"})
    assert (await socket.recv_until("chat.end"))[-1]["status"] == "completed"


async def test_answer_survives_disconnect_and_resumes_from_offset(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    openai_chat.reply = " ".join(f"w{i}" for i in range(60)) + " [1]."
    openai_chat.token_delay = 0.02
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "vacation days"})
    start = await socket.recv()
    received = ""
    while len(received) < 20:
        event = await socket.recv()
        received += event["delta"]
    await socket.close()  # the socket drops mid-answer

    message_id = start["message_id"]
    assert chat_generation.active_generation(message_id) is not None
    again = await connected(sockets, user)
    await again.send({"type": "chat.resume", "message_id": message_id, "offset": len(received), "id": "r"})
    resumed = await again.recv()
    assert resumed["type"] == "chat.start" and resumed["resumed"] is True and resumed["message_id"] == message_id
    assert resumed["reply_to"] == "r" and resumed["session_id"] == start["session_id"]
    events = await again.recv_until("chat.end")
    tokens = [e for e in events if e["type"] == "chat.token"]
    assert tokens[0]["offset"] == len(received)
    assert received + tokens_text(events) == openai_chat.reply == events[-1]["content"]
    assert events[-1]["status"] == "completed"
    assert events[-1]["citations"][0]["document_id"] == str(handbook.pk)


async def test_answer_finishes_and_is_saved_with_nobody_listening(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    openai_chat.reply = " ".join(f"w{i}" for i in range(40)) + " [1]."
    openai_chat.token_delay = 0.01
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "vacation days"})
    start = await socket.recv()
    await socket.close()
    generation = chat_generation.active_generation(start["message_id"])
    assert generation is not None
    # progressive saves happen while it streams
    saved_partial = False
    while not generation.done.is_set():
        answer = await Message.objects.aget(pk=start["message_id"])
        if answer.status == "streaming" and answer.content:
            saved_partial = True
        await asyncio.sleep(0.05)
    assert saved_partial
    answer = await Message.objects.aget(pk=start["message_id"])
    assert answer.status == "completed" and answer.content == openai_chat.reply
    assert chat_generation.active_generation(start["message_id"]) is None

    # resume after the end: everything after the offset, then chat.end, from the database
    again = await connected(sockets, user)
    await again.send({"type": "chat.resume", "message_id": start["message_id"], "offset": 10})
    events = await again.recv_until("chat.end")
    assert events[0]["type"] == "chat.start" and events[0]["resumed"] is True
    assert events[1] == {
        "type": "chat.token",
        "message_id": start["message_id"],
        "delta": openai_chat.reply[10:],
        "offset": 10,
    }
    assert events[-1]["content"] == openai_chat.reply and events[-1]["status"] == "completed"


async def test_resume_follows_an_answer_streaming_in_another_process(
    sockets: Any, user: Any, tenant: Any, settings: Any
) -> None:
    session = await ChatSession.objects.acreate(tenant=tenant, user=user, title="elsewhere")
    message = await Message.objects.acreate(
        tenant=tenant, session=session, role="assistant", content="Hello", status="streaming", model="gpt-4o-mini"
    )
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.resume", "message_id": str(message.pk), "offset": 2})
    assert (await socket.recv())["type"] == "chat.start"
    assert await socket.recv() == {"type": "chat.token", "message_id": str(message.pk), "delta": "llo", "offset": 2}
    # "the other process" saves more, then finishes
    await Message.objects.filter(pk=message.pk).aupdate(content="Hello world", updated_at=timezone.now())
    token = await socket.recv()
    assert token["delta"] == " world" and token["offset"] == 5
    await Message.objects.filter(pk=message.pk).aupdate(
        content="Hello world!", status="completed", updated_at=timezone.now()
    )
    events = await socket.recv_until("chat.end")
    assert tokens_text(events) == "!" and events[-1]["content"] == "Hello world!"


async def test_resume_ahead_of_what_the_other_process_saved_sends_nothing_twice(
    sockets: Any, user: Any, tenant: Any
) -> None:
    """The client saw 11 characters on the dropped socket; the other process has saved only 5 so far (it
    saves every CHAT_SAVE_INTERVAL_MS): the resumed stream starts at 11, never replays what came before."""
    session = await ChatSession.objects.acreate(tenant=tenant, user=user, title="lagging")
    message = await Message.objects.acreate(
        tenant=tenant, session=session, role="assistant", content="Hello", status="streaming", model="gpt-4o-mini"
    )
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.resume", "message_id": str(message.pk), "offset": 11})
    assert (await socket.recv())["type"] == "chat.start"
    await Message.objects.filter(pk=message.pk).aupdate(
        content="Hello world, again", status="completed", updated_at=timezone.now()
    )
    events = await socket.recv_until("chat.end")
    tokens = [e for e in events if e["type"] == "chat.token"]
    assert [(t["offset"], t["delta"]) for t in tokens] == [(11, ", again")], events
    assert events[-1]["content"] == "Hello world, again"


async def test_resume_of_an_abandoned_stream_fails_it(sockets: Any, user: Any, tenant: Any) -> None:
    session = await ChatSession.objects.acreate(tenant=tenant, user=user, title="crashed")
    message = await Message.objects.acreate(
        tenant=tenant, session=session, role="assistant", content="Half", status="streaming"
    )
    await Message.objects.filter(pk=message.pk).aupdate(updated_at=timezone.now() - timedelta(hours=1))
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.resume", "message_id": str(message.pk)})
    events = await socket.recv_until("chat.end")
    assert [e["type"] for e in events] == ["chat.start", "chat.token", "error", "chat.end"]
    assert events[2]["error"]["type"] == "interrupted"
    assert events[-1]["status"] == "failed" and events[-1]["content"] == "Half"


async def test_resume_refuses_other_peoples_answers_and_bad_offsets(
    sockets: Any, user: Any, tenant: Any, other_user: Any
) -> None:
    theirs = await ChatSession.objects.acreate(tenant=other_user.tenant, user=other_user)
    foreign = await Message.objects.acreate(tenant=other_user.tenant, session=theirs, role="assistant", content="x")
    mine = await ChatSession.objects.acreate(tenant=tenant, user=user)
    question = await Message.objects.acreate(tenant=tenant, session=mine, role="user", content="q")
    socket = await connected(sockets, user)
    for frame, code in [
        ({"type": "chat.resume", "message_id": str(foreign.pk)}, "not_found"),
        ({"type": "chat.resume", "message_id": str(question.pk)}, "not_found"),  # questions do not stream
        ({"type": "chat.resume", "message_id": str(foreign.pk), "offset": -1}, "validation_error"),
        ({"type": "chat.resume", "message_id": str(foreign.pk), "offset": "3"}, "validation_error"),
    ]:
        await socket.send(frame)
        assert (await _error(socket))["error"]["type"] == code


# --- events from workers ---------------------------------------------------------------------


async def test_document_and_task_events_are_forwarded_to_their_user_only(
    sockets: Any, user: Any, other_user: Any
) -> None:
    mine = await connected(sockets, user)
    theirs = await connected(sockets, other_user)
    await apublish(
        user.pk,
        document_status_event(document_id="d1", task_id="t1", status="processing", progress=40, stage="embedding"),
    )
    await apublish(
        user.pk,
        task_progress_event(
            task_id="t1", kind="document_ingestion", status="processing", progress=40, stage="embedding"
        ),
    )
    assert await mine.recv() == {
        "type": "document.status",
        "document_id": "d1",
        "task_id": "t1",
        "status": "processing",
        "progress": 40,
        "stage": "embedding",
        "error": None,
        "timings": {},
    }
    assert (await mine.recv())["type"] == "task.progress"
    # a sentinel published to the other user's group after both events: had either reached their socket,
    # it would have come first (one channel is first in, first out)
    await apublish(
        other_user.pk,
        document_status_event(document_id="sentinel", task_id="s", status="ready", progress=100, stage="done"),
    )
    assert (await theirs.recv())["document_id"] == "sentinel"


# --- upstream faults, quotas, models, nothing relevant ---------------------------------------


@pytest.mark.parametrize(
    ("mode", "kwargs", "code"),
    [
        ("rate_limit", {"retry_after": "3"}, "upstream_rate_limited"),
        ("server_error", {}, "upstream_error"),
        ("stream_cut", {"after": 3}, "upstream_stream_interrupted"),
        ("malformed_chunk", {"after": 3}, "upstream_stream_interrupted"),
    ],
)
async def test_upstream_faults_end_as_failed_answers(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any, mode: str, kwargs: dict[str, Any], code: str
) -> None:
    openai_chat.reply = "one two three four five six seven [1]"
    openai_chat.set_fault(mode, endpoint="chat", **kwargs)
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "vacation"})
    assert (await socket.recv())["type"] == "chat.start"
    events = await socket.recv_until("chat.end", timeout=10)
    error, end = events[-2], events[-1]
    assert error["type"] == "error" and error["error"]["type"] == code
    assert error["error"]["details"]["message_id"] == end["message_id"]
    assert end["status"] == "failed" and end["error"]["type"] == code
    answer = await Message.objects.aget(pk=end["message_id"])
    assert answer.status == "failed" and answer.error["type"] == code
    if mode in ("stream_cut", "malformed_chunk"):
        assert answer.content == "one two three " == tokens_text(events)  # what was said is kept
    if mode == "rate_limit":
        assert error["error"]["details"]["retry_after"] == 3
    # the socket is still usable
    openai_chat.reset()
    await socket.send({"type": "chat.message", "content": "vacation", "session_id": end["session_id"]})
    assert (await socket.recv_until("chat.end"))[-1]["status"] == "completed"


async def test_slow_first_token_past_the_timeout_fails_cleanly(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any, settings: Any
) -> None:
    # a wide margin between the timeout and the silence: a loaded machine cannot turn one into the other
    settings.OPENAI_TIMEOUT_SECONDS = 1.0
    openai_chat.set_fault("slow_first_token", endpoint="chat", delay=15.0)
    socket = await connected(sockets, user)
    started = asyncio.get_running_loop().time()
    await socket.send({"type": "chat.message", "content": "vacation"})
    events = await socket.recv_until("chat.end", timeout=20)
    # the stream's headers come at once and then nothing: the read timeout ends it mid-stream
    assert events[-2]["error"]["type"] in ("upstream_timeout", "upstream_stream_interrupted")
    assert events[-1]["status"] == "failed" and events[-1]["content"] == ""
    assert asyncio.get_running_loop().time() - started < 10, "the timeout did not cut the silence short"


async def test_quota_exceeded_on_the_socket(
    sockets: Any, user: Any, tenant: Any, handbook: Any, openai_chat: Any
) -> None:
    tenant.settings = {**tenant.settings, "user_daily_token_quota": 500}
    await tenant.asave()
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "vacation days?"})
    event = await _error(socket)
    assert event["error"]["type"] == "quota_exceeded"
    details = event["error"]["details"]
    assert details["scope"] == "user" and details["limit"] == 500 and details["retry_after"] >= 1
    assert details["resets_at"].endswith("T00:00:00Z")
    assert openai_chat.requests_to("chat") == []
    assert await Message.objects.acount() == 0 and await ChatSession.objects.acount() == 0


async def test_nothing_relevant_says_so_without_calling_the_model(sockets: Any, user: Any, openai_chat: Any) -> None:
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "What is the airspeed of an unladen swallow?"})
    events = await socket.recv_until("chat.end")
    end = events[-1]
    assert end["status"] == "completed" and end["citations"] == []
    assert "could not find anything in your documents" in end["content"]
    assert openai_chat.requests_to("chat") == []
    assert end["usage"]["total_tokens"] == 0


async def test_persian_question_gets_a_persian_instruction_and_answer(
    sockets: Any, user: Any, tenant: Any, openai_chat: Any
) -> None:
    await sync_to_async(make_ready_document)(
        tenant=tenant,
        owner=user,
        title="راهنمای کارکنان",
        pages=["هر کارمند سالانه بیست و پنج روز مرخصی با حقوق دارد.", "لپ‌تاپ‌ها باید رمزگذاری شوند."],
    )
    openai_chat.reply = "هر کارمند بیست و پنج روز مرخصی دارد [۱]."
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "هر کارمند چند روز مرخصی دارد؟"})
    end = (await socket.recv_until("chat.end"))[-1]
    system = openai_chat.requests_to("chat")[0].body["messages"][0]["content"]
    assert "answer in Persian" in system
    assert "بیست و پنج روز مرخصی" in system  # the Persian source made it into the prompt
    assert end["citations"][0]["n"] == 1 and end["citations"][0]["page_start"] == 1  # [۱] is citation 1


async def test_extractive_answers_persian_in_persian(sockets: Any, user: Any, tenant: Any) -> None:
    await sync_to_async(make_ready_document)(
        tenant=tenant,
        owner=user,
        title="راهنما",
        pages=["هر کارمند سالانه بیست و پنج روز مرخصی با حقوق دارد."],
    )
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "کارمند چند روز مرخصی دارد؟"})
    end = (await socket.recv_until("chat.end"))[-1]
    assert end["content"].startswith("هیچ مدل زبانی پیکربندی نشده است")
    assert "بیست و پنج روز مرخصی" in end["content"] and end["citations"]


async def test_session_filter_scopes_retrieval(sockets: Any, user: Any, tenant: Any, handbook: Any) -> None:
    other = await sync_to_async(make_ready_document)(
        tenant=tenant, owner=user, title="Travel", pages=["Vacation travel is booked through the travel desk."]
    )
    socket = await connected(sockets, user)
    await socket.send({"type": "chat.message", "content": "vacation", "document_ids": [str(other.pk)]})
    end = (await socket.recv_until("chat.end"))[-1]
    assert {c["document_id"] for c in end["citations"]} == {str(other.pk)}
    session = await ChatSession.objects.aget(pk=end["session_id"])
    assert session.document_ids == [str(other.pk)]
    # the session keeps its filter for the next question
    await socket.send({"type": "chat.message", "content": "vacation days", "session_id": end["session_id"]})
    end = (await socket.recv_until("chat.end"))[-1]
    assert {c["document_id"] for c in end["citations"]} == {str(other.pk)}


async def test_deactivation_and_new_tenant_settings_apply_to_open_sockets(
    sockets: Any, user: Any, tenant: Any, handbook: Any
) -> None:
    socket = await connected(sockets, user)
    # a tenant admin narrows the allow-list while the socket is open
    tenant.settings = {**tenant.settings, "allowed_models": ["gpt-4o"], "default_model": "gpt-4o"}
    await tenant.asave()
    await socket.send({"type": "chat.message", "content": "vacation", "model": "gpt-4o-mini"})
    assert (await _error(socket))["error"]["type"] == "model_not_allowed"
    # then deactivates the user: the next question closes the socket with 4403
    await type(user).objects.filter(pk=user.pk).aupdate(is_active=False)
    await socket.send({"type": "chat.message", "content": "vacation"})
    assert await socket.closed_with() == 4403
    assert await Message.objects.acount() == 0


async def test_cancel_right_after_start_still_ends_the_answer(
    sockets: Any, user: Any, handbook: Any, openai_chat: Any
) -> None:
    # the model stays silent far longer than the test: the cancel surely comes before any token
    openai_chat.set_fault("slow_first_token", endpoint="chat", delay=20.0)
    socket = await connected(sockets, user)
    started = asyncio.get_running_loop().time()
    await socket.send({"type": "chat.message", "content": "vacation"})
    await socket.send({"type": "chat.cancel"})
    events = await socket.recv_until("chat.end", timeout=15)
    assert asyncio.get_running_loop().time() - started < 10  # ended by the cancel, not by the model
    assert events[0]["type"] == "chat.start"
    assert events[-1]["status"] == "cancelled" and events[-1]["content"] == ""
    answer = await Message.objects.aget(pk=events[-1]["message_id"])
    assert answer.status == "cancelled"


async def test_a_subscriber_that_fell_behind_gets_the_waiting_tokens_as_one(
    user: Any, handbook: Any, openai_chat: Any
) -> None:
    """Backpressure: tokens that waited ``COALESCE_AFTER_SECONDS`` for a subscriber (a saturated event loop)
    reach it as one ``chat.token`` from the first one's offset; one that keeps up gets them all the same."""
    openai_chat.reply = "one two three four five six seven eight"
    openai_chat.token_delay = 0.01
    turn = await sync_to_async(prepare_turn)(tenant=user.tenant, user=user, content="vacation")
    generation = chat_generation.start(turn)
    keeping_up = generation.events(0)
    lagging = generation.events(0)
    first = await anext(lagging)  # subscribed; then it stops reading until the answer is done

    async def read_all(stream: Any) -> list[dict[str, Any]]:
        return [event async for event in stream]

    live = asyncio.get_running_loop().create_task(read_all(keeping_up))
    await asyncio.wait_for(generation.done.wait(), timeout=10)
    await asyncio.sleep(chat_generation.COALESCE_AFTER_SECONDS)
    rest = await read_all(lagging)
    assert [e["type"] for e in rest] == ["chat.token", "chat.end"]
    assert first["type"] == "chat.token" and first["offset"] == 0
    assert rest[0]["offset"] == len(first["delta"])
    assert first["delta"] + rest[0]["delta"] == rest[-1]["content"] == openai_chat.reply
    assert tokens_text(await live) == openai_chat.reply


async def test_a_generation_cancelled_before_its_first_step_still_finishes(
    user: Any, handbook: Any, openai_chat: Any
) -> None:
    turn = await sync_to_async(prepare_turn)(tenant=user.tenant, user=user, content="vacation")
    generation = chat_generation.start(turn)
    queue = generation.subscribe(0)
    generation.cancel()  # the task has not run yet
    end = await asyncio.wait_for(queue.get(), timeout=10)
    assert end["type"] == "chat.end" and end["status"] == "cancelled"
    assert (await Message.objects.aget(pk=turn.answer.pk)).status == "cancelled"
    assert openai_chat.requests_to("chat") == []
    # nothing was asked of the model, so nothing is charged
    record = await UsageRecord.objects.aget(pk=turn.reservation.pk)
    assert record.prompt_tokens == record.completion_tokens == 0


async def test_an_idle_socket_stays_open_and_still_gets_events(sockets: Any, user: Any) -> None:
    """Longer than the channel layer's blocking read (5 s) with nothing to say: still connected after."""
    socket = await connected(sockets, user)
    assert await socket.nothing(6.5)
    await apublish(
        user.pk,
        task_progress_event(task_id="t9", kind="document_ingestion", status="completed", progress=100, stage="done"),
    )
    assert (await socket.recv())["task_id"] == "t9"
    await socket.send({"type": "ping"})
    assert (await socket.recv())["type"] == "pong"
