"""Readiness against a real daphne on the test database: steady when idle, honest when the layer breaks.

Over Redis (``channels_redis``, the distributed mode) the probe used to time out as soon as one socket
was open: see ``tests/health/test_readiness_redis.py`` for why, and for the same under load in process.

The embedded default's channel layer is PostgreSQL LISTEN/NOTIFY (``config/channel_layers.py``); its
round trip is what ``check_channel_layer`` measures. It used to answer 503 on most calls of an idle
server (the probe sent before it held the channel, so the listener dropped the notification).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from config.channel_layers import LISTENER_APPLICATION_NAME
from tests.subprocesses import build_subprocess_env, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _listener_pids(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (LISTENER_APPLICATION_NAME,)
        ).fetchall()
    return [row[0] for row in rows]


def test_readiness_is_steady_on_an_idle_server_and_recovers_when_the_listener_dies(tmp_path: Path) -> None:
    env = build_subprocess_env(LOG_LEVEL="WARNING")
    env.pop("REDIS_URL", None)  # the embedded default: the PostgreSQL channel layer
    with daphne_server(env, tmp_path / "daphne.log") as base:
        answers: list[tuple[int, Any]] = []
        for _ in range(20):
            response = httpx.get(f"{base}/api/v1/health/ready", timeout=10)
            answers.append((response.status_code, response.json()["checks"]["channel_layer"]))
        assert [status for status, _ in answers] == [200] * 20, answers
        assert max(check["latency_ms"] for _, check in answers) < 1000, answers

        # The LISTEN connection dies (a database restart, an idle-connection killer): the layer
        # notices, listens again, and readiness is 200 again without restarting daphne.
        pids = _listener_pids(env["DATABASE_URL"])
        assert pids, "daphne holds no LISTEN connection"
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            for pid in pids:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 15
        statuses = []
        while time.monotonic() < deadline:
            statuses.append(httpx.get(f"{base}/api/v1/health/ready", timeout=10).status_code)
            if statuses[-3:] == [200, 200, 200]:
                break
        assert statuses[-3:] == [200, 200, 200], statuses


def _advisory_locks(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    return int(row[0]) if row else 0


def test_sockets_and_probes_do_not_pile_up_advisory_locks(user: Any, tmp_path: Path) -> None:
    """channels_postgres locks every channel it receives on for the rest of the session; every socket is
    a new channel, so the locks would fill PostgreSQL's shared lock table on a long-running server."""
    from websockets.sync.client import connect

    from accounts.authentication import tokens_for_user

    env = build_subprocess_env(LOG_LEVEL="WARNING")
    env.pop("REDIS_URL", None)
    token = tokens_for_user(user)["access"]
    with daphne_server(env, tmp_path / "daphne.log") as base:
        assert httpx.get(f"{base}/api/v1/health/ready", timeout=10).status_code == 200
        before = _advisory_locks(env["DATABASE_URL"])
        for _ in range(15):
            with connect(base.replace("http://", "ws://") + f"/ws/chat/?token={token}", open_timeout=10) as ws:
                ws.send('{"type": "ping"}')
                assert "pong" in ws.recv(timeout=10)
            assert httpx.get(f"{base}/api/v1/health/ready", timeout=10).status_code == 200
        after = _advisory_locks(env["DATABASE_URL"])
    assert after - before < 3, (before, after)


@pytest.mark.redis
def test_readiness_over_redis_is_steady_while_sockets_are_open(user: Any, require_redis: str, tmp_path: Path) -> None:
    """Every open socket's consumer waits in the Redis layer's receive (one of them holding its lock): the
    probe answers through the same receive loop, 200 every time, well within the check's timeout."""
    from websockets.sync.client import connect

    from accounts.authentication import tokens_for_user

    env = build_subprocess_env(REDIS_URL=require_redis, LOG_LEVEL="WARNING")
    token = tokens_for_user(user)["access"]
    with daphne_server(env, tmp_path / "daphne.log") as base, contextlib.ExitStack() as stack:
        url = base.replace("http://", "ws://") + f"/ws/chat/?token={token}"
        sockets = [stack.enter_context(connect(url, open_timeout=10)) for _ in range(10)]
        for ws in sockets:
            ws.send('{"type": "ping"}')
            assert "pong" in ws.recv(timeout=10)
        answers = []
        for _ in range(10):
            response = httpx.get(f"{base}/api/v1/health/ready", timeout=10)
            answers.append((response.status_code, response.json()["checks"]["channel_layer"]))
    assert [status for status, _ in answers] == [200] * 10, answers
    assert {check["backend"] for _, check in answers} == {"RedisChannelLayer"}, answers
    assert max(check["latency_ms"] for _, check in answers) < 1000, answers


def test_readiness_is_steady_while_many_answers_stream_on_the_embedded_layer(
    user: Any, fake_openai_server: Any, tmp_path: Path
) -> None:
    """The embedded default under load: 60 sockets ask at once while the answers stream (every token an
    event through the PostgreSQL channel layer's NOTIFY) and the probe runs 20 times: 200 every time,
    and every answer completes."""
    import json
    import threading

    from websockets.sync.client import connect

    from accounts.authentication import tokens_for_user
    from tests.chat.conftest import HANDBOOK, make_ready_document

    make_ready_document(tenant=user.tenant, owner=user, pages=HANDBOOK)
    fake_openai_server.reset()
    # Long answers, slowly: they still stream when the probes end, however slow the machine (a loaded
    # CI run took seconds for the 20); then the rest comes at once.
    fake_openai_server.reply = "Every employee receives twenty-five days [1]. " + " ".join(["More."] * 300)
    fake_openai_server.token_delay = 0.1
    env = build_subprocess_env(LOG_LEVEL="WARNING", CHAT_PROVIDER="openai", **fake_openai_server.process_env())
    env.pop("REDIS_URL", None)
    token = tokens_for_user(user)["access"]
    ends: list[str] = []
    streaming = threading.Barrier(61, timeout=60)

    def ask(url: str) -> None:
        with connect(url, open_timeout=30) as ws:
            ws.send(json.dumps({"type": "chat.message", "content": "How many vacation days do I get?"}))
            first_token = True
            while True:
                event = json.loads(ws.recv(timeout=120))
                if event["type"] == "chat.token" and first_token:
                    first_token = False
                    streaming.wait()
                if event["type"] in ("chat.end", "error"):
                    ends.append(event.get("status") or event["type"])
                    return

    try:
        with daphne_server(env, tmp_path / "daphne.log") as base:
            url = base.replace("http://", "ws://") + f"/ws/chat/?token={token}"
            askers = [threading.Thread(target=ask, args=(url,), daemon=True) for _ in range(60)]
            for thread in askers:
                thread.start()
            streaming.wait()  # every socket has its first token: 60 answers are streaming now
            answers = []
            for _ in range(20):
                response = httpx.get(f"{base}/api/v1/health/ready", timeout=10)
                answers.append((response.status_code, response.json()["checks"]["channel_layer"]))
            ended_during_probes = len(ends)
            fake_openai_server.token_delay = 0
            for thread in askers:
                thread.join(timeout=120)
    finally:
        fake_openai_server.reset()
    assert [status for status, _ in answers] == [200] * 20, answers
    assert {check["backend"] for _, check in answers} == {"PostgresChannelLayer"}, answers
    assert ends == ["completed"] * 60, ends
    assert ended_during_probes == 0, "the probes must run while every answer streams"
