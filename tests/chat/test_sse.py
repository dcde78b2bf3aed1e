"""Chat answers as Server-Sent Events: the socket's events with ids, errors before the stream as
JSON, a dropped connection that does not stop the answer, resume with Last-Event-ID, cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from chat import generation
from chat.models import ChatSession, Message
from tests.chat.conftest import HANDBOOK, access_token, make_ready_document
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "How many vacation days do I get?"


def headers(user: Any, **extra: str) -> dict[str, str]:
    return {"X-Tenant-ID": user.tenant.slug, "Authorization": f"Bearer {access_token(user)}", **extra}


SSE = {"Accept": "text/event-stream"}


async def parse(chunks: AsyncIterator[bytes], *, limit: int | None = None) -> list[dict[str, Any]]:
    """SSE frames (``event``, ``id``, ``data``) from a streaming body, up to ``chat.end`` or ``limit``."""
    events: list[dict[str, Any]] = []
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, Any] = {}
            for line in frame.decode().split("\n"):
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" not in fields:
                continue
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
            if fields["event"] == "chat.end" or (limit is not None and len(events) >= limit):
                return events
    return events


@pytest.fixture
async def session(user: Any) -> ChatSession:
    await sync_to_async(make_ready_document)(tenant=user.tenant, owner=user, pages=HANDBOOK)
    return await sync_to_async(ChatSession.objects.create)(tenant=user.tenant, user=user, title="t")


def url(session: ChatSession, suffix: str = "") -> str:
    return f"/api/v1/chat/sessions/{session.pk}/messages/{suffix}"


async def ask(client: AsyncClient, user: Any, session: ChatSession, content: str = QUESTION) -> Any:
    return await client.post(
        url(session), {"content": content}, content_type="application/json", headers=headers(user, **SSE)
    )


async def test_streams_the_sockets_events_with_ids(user: Any, session: ChatSession) -> None:
    response = await ask(AsyncClient(), user, session)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    events = await parse(response.streaming_content)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "chat.start" and kinds[-1] == "chat.end" and set(kinds[1:-1]) == {"chat.token"}
    assert all(e["event"] == e["data"]["type"] for e in events)
    text = "".join(e["data"]["delta"] for e in events if e["event"] == "chat.token")
    end = events[-1]["data"]
    assert text == end["content"] and "twenty-five" in text and end["status"] == "completed"
    assert events[0]["id"] == "0" and events[-1]["id"] == f"{len(text)}.end"
    offsets = [int(e["id"]) for e in events if e["event"] == "chat.token"]
    assert offsets == sorted(offsets) and offsets[-1] == len(text)
    message = await sync_to_async(Message.objects.get)(pk=end["message_id"])
    assert message.content == text and message.status == "completed"


async def test_errors_before_the_stream_are_json(user: Any, session: ChatSession, other_user: Any) -> None:
    client = AsyncClient()
    response = await ask(client, user, session, content="")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["type"] == "validation_error"
    foreign = await client.post(
        url(session), {"content": QUESTION}, content_type="application/json", headers=headers(other_user, **SSE)
    )
    assert foreign.status_code == 404 and foreign.json()["error"]["type"] == "not_found"
    anonymous = await client.post(
        url(session), {"content": QUESTION}, content_type="application/json", headers={"X-Tenant-ID": "acme", **SSE}
    )
    assert anonymous.status_code == 401


async def test_without_the_accept_header_the_answer_is_json(user: Any, session: ChatSession) -> None:
    response = await AsyncClient().post(
        url(session), {"content": QUESTION}, content_type="application/json", headers=headers(user)
    )
    assert response.status_code == 201 and "twenty-five" in response.json()["content"]


@pytest.fixture
def slow_model(settings: Any, fake_openai: Any) -> Any:
    settings.CHAT_PROVIDER, settings.OPENAI_API_KEY = "openai", "sk-test"
    settings.OPENAI_BASE_URL, settings.OPENAI_MAX_RETRIES = fake_openai.base_url, 0
    fake_openai.reply = " ".join(f"word{i}" for i in range(40))
    fake_openai.token_delay = 0.05
    return fake_openai


async def test_dropped_connection_does_not_stop_the_answer_and_last_event_id_resumes(
    user: Any, session: ChatSession, slow_model: Any
) -> None:
    client = AsyncClient()
    response = await ask(client, user, session)
    stream = response.streaming_content
    first = await parse(stream, limit=3)  # chat.start and two tokens
    await stream.aclose()  # the client goes away
    message_id = first[0]["data"]["message_id"]
    received = "".join(e["data"]["delta"] for e in first if e["event"] == "chat.token")
    last_id = first[-1]["id"]
    assert int(last_id) == len(received)
    await generation.drain(timeout=20)  # the answer ran on to its end
    message = await sync_to_async(Message.objects.get)(pk=message_id)
    assert message.status == "completed" and message.content.startswith(received)
    assert len(message.content) > len(received)

    resumed = await client.get(
        url(session, f"{message_id}/stream"), headers=headers(user, **{"Last-Event-ID": last_id})
    )
    events = await parse(resumed.streaming_content)
    assert events[0]["event"] == "chat.start" and events[0]["data"]["resumed"] is True
    rest = "".join(e["data"]["delta"] for e in events if e["event"] == "chat.token")
    assert received + rest == message.content
    assert events[-1]["event"] == "chat.end" and events[-1]["id"] == f"{len(message.content)}.end"

    again = await client.get(
        url(session, f"{message_id}/stream"), headers=headers(user, **{"Last-Event-ID": events[-1]["id"]})
    )
    assert [e["event"] for e in await parse(again.streaming_content)] == ["chat.start", "chat.end"]


async def test_resume_follows_a_live_answer(user: Any, session: ChatSession, slow_model: Any) -> None:
    client = AsyncClient()
    response = await ask(client, user, session)
    stream = response.streaming_content
    first = await parse(stream, limit=2)
    await stream.aclose()
    message_id = first[0]["data"]["message_id"]
    resumed = await client.get(
        url(session, f"{message_id}/stream"), headers=headers(user, **{"Last-Event-ID": first[-1]["id"]})
    )
    events = await parse(resumed.streaming_content)
    text = first[-1]["data"]["delta"] + "".join(e["data"]["delta"] for e in events if e["event"] == "chat.token")
    assert events[-1]["data"]["content"] == text and events[-1]["data"]["status"] == "completed"


async def test_cancel_stops_the_answer(user: Any, session: ChatSession, slow_model: Any, other_user: Any) -> None:
    client = AsyncClient()
    response = await ask(client, user, session)
    stream = response.streaming_content
    first = await parse(stream, limit=2)
    message_id = first[0]["data"]["message_id"]
    foreign = await client.post(url(session, f"{message_id}/cancel"), headers=headers(other_user))
    assert foreign.status_code == 404
    cancelled = await client.post(url(session, f"{message_id}/cancel"), headers=headers(user))
    assert cancelled.status_code == 202, cancelled.content
    rest = await parse(stream)
    assert rest[-1]["event"] == "chat.end" and rest[-1]["data"]["status"] == "cancelled"
    await generation.drain(timeout=10)
    message = await sync_to_async(Message.objects.get)(pk=message_id)
    assert message.status == "cancelled" and message.content == rest[-1]["data"]["content"]
    finished = await client.post(url(session, f"{message_id}/cancel"), headers=headers(user))
    assert finished.status_code == 409 and finished.json()["error"]["type"] == "answer_finished"


async def test_another_users_or_unknown_answer_is_404(user: Any, session: ChatSession, tenant: Any) -> None:
    client = AsyncClient()
    events = await parse((await ask(client, user, session)).streaming_content)
    message_id = events[0]["data"]["message_id"]
    colleague = await sync_to_async(UserFactory)(tenant=tenant, email="colleague@acme.test")
    for who, path in (
        (colleague, url(session, f"{message_id}/stream")),
        (user, url(session, "00000000-0000-0000-0000-000000000000/stream")),
        (user, url(session, "not-a-uuid/stream")),
    ):
        response = await client.get(path, headers=headers(who))
        assert response.status_code == 404, (path, response.status_code)
    await asyncio.sleep(0)


@pytest.mark.parametrize("mode", ["stream_cut", "malformed_chunk"])
async def test_a_model_failing_mid_stream_ends_with_an_error_event(
    user: Any, session: ChatSession, openai_chat: Any, mode: str
) -> None:
    openai_chat.reply = "one two three four five six seven [1]"
    openai_chat.set_fault(mode, endpoint="chat", after=3)
    response = await ask(AsyncClient(), user, session)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    events = await parse(response.streaming_content)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "chat.start" and kinds[-2:] == ["error", "chat.end"], kinds
    assert set(kinds[1:-2]) == {"chat.token"}
    message_id = events[0]["data"]["message_id"]
    said = "".join(e["data"]["delta"] for e in events if e["event"] == "chat.token")
    assert said == "one two three "
    error = events[-2]
    # the standard envelope, as on the socket, with the stream's id (characters delivered, ended)
    assert error["id"] == f"{len(said)}.end" and error["data"]["type"] == "error"
    assert set(error["data"]["error"]) >= {"type", "message", "details"}
    assert error["data"]["error"]["type"] == "upstream_stream_interrupted" and error["data"]["error"]["message"]
    assert error["data"]["error"]["details"]["message_id"] == message_id
    end = events[-1]["data"]
    assert end["status"] == "failed" and end["content"] == said and events[-1]["id"] == f"{len(said)}.end"
    await generation.drain(timeout=10)
    message = await sync_to_async(Message.objects.get)(pk=message_id)
    assert message.status == "failed" and message.content == said
    assert message.error["type"] == "upstream_stream_interrupted"
