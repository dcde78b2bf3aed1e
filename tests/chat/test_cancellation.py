"""Cancelling an answer that generates in another web process, through the channel layer (PostgreSQL here).

The other process is played by a second channel layer (``make_backend``: its own client prefix, channels
and ``LISTEN`` connection; the library's module-wide pool of connections for sending is shared) on an
event loop of its own, in a thread. It never sees this process's registry of generations: messages
between the two go through the layer's table and ``NOTIFY``, as between two processes. The end-to-end
tests do it with real processes: two daphnes on Redis (tests/e2e/test_distributed.py) and on the
PostgreSQL layer (tests/e2e/test_embedded.py).
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.test import AsyncClient
from django.utils import timezone

from chat import cancellation, generation
from chat.models import ChatSession, Message
from tests.chat.conftest import Socket, access_token
from tests.chat.test_sse import ask, parse, url
from tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)

REPLY = " ".join(f"word{i}" for i in range(40))


class OtherProcess:
    """A second channel layer on its own event loop and thread."""

    def __init__(self) -> None:
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="other-process", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def listening(self) -> str:
        """Join the cancels' group as a process generating answers does; the channel it receives on."""

        async def join() -> str:
            channel = await self.layer.new_channel()
            self.receiving = asyncio.ensure_future(self.layer.receive(channel))
            await asyncio.sleep(0)
            await self.layer.group_add(cancellation.GROUP, channel)
            return channel

        return self.run(join())

    def received(self, timeout: float = 10) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            return await asyncio.wait_for(asyncio.shield(self.receiving), timeout)

        return self.run(wait(), timeout + 5)

    def close(self) -> None:
        async def stop() -> None:
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def other_process() -> Iterator[OtherProcess]:
    other = OtherProcess()
    yield other
    other.close()


@pytest.fixture
def slow_model(settings: Any, fake_openai: Any) -> Any:
    settings.CHAT_PROVIDER, settings.OPENAI_API_KEY = "openai", "sk-test"
    settings.OPENAI_BASE_URL, settings.OPENAI_MAX_RETRIES = fake_openai.base_url, 0
    fake_openai.reply = REPLY
    fake_openai.token_delay = 0.05
    return fake_openai


@pytest.fixture
def session(user: Any) -> ChatSession:
    from tests.chat.conftest import HANDBOOK, make_ready_document

    make_ready_document(tenant=user.tenant, owner=user, pages=HANDBOOK)
    return ChatSession.objects.create(tenant=user.tenant, user=user, title="t")


def streaming_answer(session: ChatSession, *, content: str = "So far", age_seconds: float = 0) -> Message:
    """An answer row as a process generating it leaves it mid-stream (saved ``age_seconds`` ago)."""
    answer = Message.objects.create(
        tenant=session.tenant, session=session, role=Message.Role.ASSISTANT, status="streaming", content=content
    )
    if age_seconds:
        then = timezone.now() - datetime.timedelta(seconds=age_seconds)
        Message.objects.filter(pk=answer.pk).update(updated_at=then)
    return answer


# --- the answer generates here, the cancel comes from the other process ------------------------------
async def test_a_cancel_from_another_process_stops_the_answer_here(
    user: Any, session: ChatSession, slow_model: Any, other_process: OtherProcess
) -> None:
    client = AsyncClient()
    stream = (await ask(client, user, session)).streaming_content
    first = await parse(stream, limit=2)  # chat.start, then a token: the answer is under way
    message_id = first[0]["data"]["message_id"]
    sent = cancellation.send_cancel([message_id], layer=other_process.layer)
    await asyncio.to_thread(other_process.run, sent)
    rest = await asyncio.wait_for(parse(stream), 15)
    end = rest[-1]["data"]
    assert rest[-1]["event"] == "chat.end" and end["status"] == "cancelled", rest
    said = first[1]["data"]["delta"] + "".join(e["data"]["delta"] for e in rest if e["event"] == "chat.token")
    assert end["content"] == said and 0 < len(said) < len(REPLY)
    await generation.drain(timeout=10)
    message = await Message.objects.aget(pk=message_id)
    assert (message.status, message.content) == ("cancelled", said)
    assert generation.active_generation(message_id) is None


# --- the answer generates in the other process, the cancel comes here ------------------------------
def test_a_rest_cancel_reaches_the_process_generating_the_answer(
    user: Any, session: ChatSession, other_process: OtherProcess
) -> None:
    answer = streaming_answer(session)
    other_process.listening()
    response = make_client(user).post(url(session, f"{answer.pk}/cancel"))
    assert response.status_code == 202, response.content
    assert response.json() == {"message_id": str(answer.pk), "status": "cancelling"}
    assert other_process.received() == {"type": "chat.cancel", "message_id": str(answer.pk)}


def test_another_tenants_answer_is_404_and_nothing_is_sent(
    user: Any, other_user: Any, session: ChatSession, other_process: OtherProcess
) -> None:
    answer = streaming_answer(session)
    other_process.listening()
    theirs = ChatSession.objects.create(tenant=other_user.tenant, user=other_user, title="theirs")
    for path in (url(session, f"{answer.pk}/cancel"), url(theirs, f"{answer.pk}/cancel")):
        response = make_client(other_user).post(path)
        assert response.status_code == 404, (path, response.content)
        assert response.json()["error"]["type"] == "not_found"
    with pytest.raises(TimeoutError):
        other_process.received(timeout=1.5)
    assert Message.objects.get(pk=answer.pk).status == "streaming"


def test_ended_and_abandoned_answers_are_409(user: Any, session: ChatSession, settings: Any) -> None:
    settings.CHAT_STALE_STREAM_SECONDS = 30
    done = streaming_answer(session)
    Message.objects.filter(pk=done.pk).update(status="completed")
    response = make_client(user).post(url(session, f"{done.pk}/cancel"))
    assert response.status_code == 409 and response.json()["error"]["type"] == "answer_finished"
    # streaming, but unsaved for longer than CHAT_STALE_STREAM_SECONDS: its process stopped
    abandoned = streaming_answer(session, content="Half an ans", age_seconds=60)
    response = make_client(user).post(url(session, f"{abandoned.pk}/cancel"))
    assert response.status_code == 409, response.content
    assert response.json()["error"]["details"]["status"] == "failed"
    abandoned.refresh_from_db()
    assert (abandoned.status, abandoned.error["type"], abandoned.content) == ("failed", "interrupted", "Half an ans")


def test_deleting_a_session_cancels_its_answer_in_the_other_process(
    user: Any, session: ChatSession, other_process: OtherProcess
) -> None:
    answer = streaming_answer(session)
    other_process.listening()
    assert make_client(user).delete(f"/api/v1/chat/sessions/{session.pk}/").status_code == 204
    assert other_process.received() == {"type": "chat.cancel", "message_id": str(answer.pk)}
    assert not ChatSession.objects.filter(pk=session.pk).exists()


async def test_a_socket_cancel_after_resuming_reaches_the_other_process(
    user: Any, session: ChatSession, other_process: OtherProcess
) -> None:
    answer = await sync_to_async(streaming_answer)(session)
    await asyncio.to_thread(other_process.listening)
    socket = Socket(access_token(user))
    assert (await socket.connect())[0]
    try:
        await socket.send({"type": "chat.resume", "message_id": str(answer.pk)})
        assert (await socket.recv())["type"] == "chat.start"
        assert (await socket.recv())["delta"] == "So far"
        await socket.send({"type": "chat.cancel", "message_id": str(answer.pk)})
        received = await asyncio.to_thread(other_process.received)
        assert received == {"type": "chat.cancel", "message_id": str(answer.pk)}
        assert await socket.nothing(0.5)  # no error event: the cancel was accepted
        # the other process saves it cancelled: this socket, following the row, ends with it
        await Message.objects.filter(pk=answer.pk).aupdate(status="cancelled")
        end = (await socket.recv_until("chat.end"))[-1]
        assert (end["status"], end["content"]) == ("cancelled", "So far")
    finally:
        await socket.comm.disconnect()


async def test_a_hung_channel_layer_holds_up_one_answer_at_most_then_none_for_a_while() -> None:
    """A layer that accepts connections but never answers (a wedged Redis): the first answer waits the
    join's timeout; the answers after it do not wait again until the retry interval has passed."""
    import socket
    import time

    from django.test import override_settings

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel completes connections; nothing ever reads or answers them
    layers = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{hung.getsockname()[1]}/0"]},
        }
    }
    try:
        with override_settings(CHANNEL_LAYERS=layers):
            channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
            waits = []
            for _ in range(3):
                started = time.monotonic()
                await cancellation.listen(lambda message_id: False)
                waits.append(time.monotonic() - started)
    finally:
        channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)
        hung.close()
    assert cancellation.JOIN_TIMEOUT_SECONDS - 0.5 <= waits[0] <= cancellation.JOIN_TIMEOUT_SECONDS + 1, waits
    assert max(waits[1:]) < 0.2, waits


def test_only_a_stale_answer_is_marked_interrupted(session: ChatSession, settings: Any) -> None:
    """The check and the update are one statement: a row saved meanwhile (its process is alive) stays
    streaming, whatever the caller saw before."""
    from chat.services import message_mark_interrupted

    settings.CHAT_STALE_STREAM_SECONDS = 30
    fresh = streaming_answer(session, content="Still going")
    assert message_mark_interrupted(message_id=fresh.pk) == 0
    assert Message.objects.get(pk=fresh.pk).status == "streaming"
    stale = streaming_answer(session, content="Stopped", age_seconds=60)
    assert message_mark_interrupted(message_id=stale.pk) == 1
    assert Message.objects.get(pk=stale.pk).status == "failed"
