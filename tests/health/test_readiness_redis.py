"""Readiness on the Redis channel layer (``channels_redis``, the distributed mode) while sockets wait.

Every open socket's consumer waits in ``receive()`` on a channel of its own from ``new_channel()``.
``channels_redis`` serves all of them through one receive loop: the coroutine holding its lock blocks
on the Redis key of its own channel's prefix until a message arrives there. The readiness probe used
to receive on a ``health.`` channel, whose key nobody popped while a socket held that lock: with one
idle socket open, every probe timed out (503), and the chat benchmark saw 0/3 readiness answers.

Here the check runs as daphne runs it: the sync view on a worker thread (``sync_to_async``), its round
trip (``async_to_sync``) on the event loop where the sockets receive, with hundreds of receivers,
group traffic and a lagging loop. It must answer, and still fail when Redis goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import override_settings

from health import checks
from tests.services import require_redis_server
from tests.stack import RedisServer

pytestmark = pytest.mark.redis


def redis_layers(url: str) -> dict[str, Any]:
    """CHANNEL_LAYERS as ``config/settings/base.py`` makes them for REDIS_URL, on keys of this test's own."""
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": url, "socket_timeout": 30}],
                "capacity": 1000,
                "expiry": 60,
                "prefix": f"documind-test-{uuid.uuid4().hex[:8]}:",
            },
        }
    }


async def readiness_as_daphne_runs_it() -> tuple[bool, dict[str, Any]]:
    """The channel-layer check from a worker thread, its round trip scheduled on this (the sockets') loop."""
    return await sync_to_async(checks.run_checks)({"channel_layer": checks.check_channel_layer})


class SocketCrowd:
    """``sockets`` receivers on ``new_channel()`` channels, each in a group of its own (as a consumer is in
    its user's group), receiving in a loop like a consumer's dispatch loop; optionally a sender that keeps
    ``in_flight`` group events on their way to random sockets at all times, and a task that blocks the
    loop in ``lag_ms`` slices (a busy server).

    The sender waits for deliveries before sending more: ``channels_redis`` delivers a process's messages
    one at a time, several Redis round trips and loop turns each (about 10 a second on a loop blocked in
    5 ms slices here), so an open-loop sender would outrun it on a slow machine and measure that backlog
    instead of the probe. The probe's message queues behind the events in flight, as a socket's would.
    """

    def __init__(self, layer: Any, sockets: int, *, in_flight: int, lag_ms: float) -> None:
        self.layer = layer
        self.sockets = sockets
        self.in_flight = in_flight
        self.lag_ms = lag_ms
        self.received: Counter[str] = Counter()
        self.sent = 0
        self.delivered = asyncio.Condition()
        self.tasks: list[asyncio.Task[None]] = []

    async def _receive(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except (ConnectionError, OSError):
                await asyncio.sleep(0.05)  # Redis went away (the failure test): try again, as a client does
                continue
            self.received[message["type"]] += 1
            async with self.delivered:
                self.delivered.notify_all()

    async def _send(self, groups: list[str]) -> None:
        while True:
            async with self.delivered:
                await self.delivered.wait_for(lambda: self.sent - self.received["task.progress"] < self.in_flight)
            try:
                await self.layer.group_send(random.choice(groups), {"type": "task.progress", "n": self.sent})
            except (ConnectionError, OSError):
                await asyncio.sleep(0.05)
                continue
            self.sent += 1

    async def _lag(self) -> None:
        while True:
            time.sleep(self.lag_ms / 1000)  # blocks the loop, as the streaming of hundreds of answers does
            await asyncio.sleep(0)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SocketCrowd]:
        groups = []
        for i in range(self.sockets):
            channel = await self.layer.new_channel()
            group = f"user.{i}"
            await self.layer.group_add(group, channel)
            groups.append(group)
            self.tasks.append(asyncio.create_task(self._receive(channel)))
        if self.in_flight:
            self.tasks.append(asyncio.create_task(self._send(groups)))
        if self.lag_ms:
            self.tasks.append(asyncio.create_task(self._lag()))
        await asyncio.sleep(0.2)  # every receiver is waiting (one of them holding the receive lock)
        try:
            yield self
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Cancel every task, again while some are left. On Python 3.11, ``asyncio.wait_for`` can lose a
        cancel that arrives just as its inner task finishes (CPython gh-86296); redis-py writes each command
        through ``wait_for`` (``socket_timeout`` is set), so a cancel landing while the receiver that holds
        channels_redis's receive lock sends a command is lost, and that receiver goes on as an ordinary one
        (the others keep getting their messages). A second cancel ends it; under daphne, the application
        close timeout (10 s) gives it."""
        pending = set(self.tasks)
        for _ in range(20):
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
            if not pending:
                return
        raise AssertionError(f"{len(pending)} receivers did not stop")


@pytest.mark.parametrize(
    ("sockets", "in_flight", "lag_ms"),
    [
        pytest.param(1, 0, 0, id="one-idle-socket"),
        pytest.param(300, 5, 5, id="300-sockets-group-events-busy-loop"),
    ],
)
async def test_readiness_answers_while_sockets_receive_on_redis(
    require_redis: str, sockets: int, in_flight: int, lag_ms: float
) -> None:
    with override_settings(CHANNEL_LAYERS=redis_layers(require_redis)):
        layer = get_channel_layer()
        try:
            async with SocketCrowd(layer, sockets, in_flight=in_flight, lag_ms=lag_ms).running() as crowd:
                answers = [await readiness_as_daphne_runs_it() for _ in range(8)]
                delivered_meanwhile = crowd.received["task.progress"]
        finally:
            await asyncio.wait_for(layer.flush(), 10)
    failed = [results for ok, results in answers if not ok]
    assert not failed, failed
    assert all(results["channel_layer"]["backend"] == "RedisChannelLayer" for _, results in answers)
    # the probe's messages went to the probe only, and the sockets' traffic flowed around it
    assert crowd.received["health.ping"] == 0, crowd.received
    if in_flight:
        assert delivered_meanwhile >= 3 * in_flight, (crowd.sent, crowd.received)


async def test_readiness_fails_while_sockets_wait_when_redis_goes_away_and_recovers(tmp_path: Path) -> None:
    """The same crowd on a private Redis that stops: 503 within the check's timeout (not a hang, not a
    200 from a buffer), and 200 again once Redis is back on the same address."""
    require_redis_server()
    server = RedisServer(tmp_path / "redis").start()
    try:
        with override_settings(CHANNEL_LAYERS=redis_layers(server.url)):
            layer = get_channel_layer()
            async with SocketCrowd(layer, 100, in_flight=5, lag_ms=5).running():
                ok, results = await readiness_as_daphne_runs_it()
                assert ok, results

                await sync_to_async(server.stop)()
                started = time.monotonic()
                ok, results = await readiness_as_daphne_runs_it()
                assert not ok, results
                assert results["channel_layer"]["status"] == "error" and results["channel_layer"]["error"], results
                assert time.monotonic() - started < checks.CHECK_TIMEOUT_SECONDS + 2

                await sync_to_async(server.start)()
                deadline = time.monotonic() + 15
                while not (ok := (await readiness_as_daphne_runs_it())[0]) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                assert ok, "readiness did not recover after Redis came back"
            await asyncio.wait_for(layer.flush(), 10)
    finally:
        server.stop()
