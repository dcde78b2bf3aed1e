"""The distributed mode, run for real: two daphnes and two Celery workers, Redis, PostgreSQL over TCP.

Separate OS processes on loopback, without Docker: a PostgreSQL with pgvector of its own listening
on a TCP port (migrated by ``manage.py migrate``), a private ``redis-server`` on a free port (the
machine's shared Redis is never touched), web A and web B (daphne) and two prefork workers, all on
``REDIS_URL`` (broker, channel layer, cache). The module shares one stack; its tests run in order:

1. the walk of the embedded test, across webs: a socket on web A receives the ``document.status``
   events of an upload made through web B; search; a streamed cited answer; cancel; resume; an
   answer generating on web A cancelled through web B (REST, a reconnected socket, a session deletion);
2. a worker's pool process SIGKILLed mid-ingest: the task is redelivered and the document ends
   ready with exactly the chunks of an undisturbed run (no duplicates);
3. rate limits and sign-in code attempts are counted across both webs;
4. web A SIGKILLed mid-answer: on web B, ``chat.resume`` replays the saved text and the answer ends
   ``interrupted`` within ``CHAT_STALE_STREAM_SECONDS`` + 5 s (generation lives in the web process);
5. the Redis stopped, then started again on its port: readiness 503 while it is down, the general
   API rate limit fails open (with a warning in the log), sign-in fails closed (503); everything
   recovers without restarting any of our processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.documents.pdfs import MINUTES_PAGES, MINUTES_QUESTION, make_pdf
from tests.e2e import flow
from tests.e2e.client import Api, Socket, streamed_text
from tests.fake_openai import FakeOpenAI
from tests.services import require_redis_server
from tests.stack import RedisServer, Stack, TcpPostgres, start_stack, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(420)]

TENANT, EMAIL = "distributed-e2e", "alice@distributed-e2e.test"
STALE_SECONDS = 4
RATE_PER_MINUTE = 40
CODE_ATTEMPTS = 5


@dataclass
class Distributed:
    stack: Stack
    redis: RedisServer
    postgres: TcpPostgres
    mail_dir: Path
    api_b: Api  # signed in through web B

    @property
    def a(self) -> Any:
        return self.stack.webs[0]

    @property
    def b(self) -> Any:
        return self.stack.webs[1]

    def socket(self, web: Any) -> Socket:
        return Socket(web.ws_base, self.api_b.token or "", origin=None)  # a plain client: no Origin

    def api(self, web: Any) -> Api:
        return Api(web.base, TENANT, token=self.api_b.token)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with self.postgres.connect() as conn:
            return conn.execute(query, args).fetchall()


def distributed_env(folder: Path, redis: RedisServer, postgres: TcpPostgres, fake: FakeOpenAI) -> dict[str, str]:
    """The processes' environment: nothing of the test session's database, broker or media."""
    dropped = {"DATABASE_URL", "EMBEDDED_PGDATA", "EMBEDDED_PG_CLEANUP", "CELERY_BROKER_DIR", "CELERY_BROKER_URL",
               "MEDIA_ROOT", "REDIS_URL", "DOCUMIND_TEST_REDIS_URL", "DOCUMIND_TEST_ROOT"}  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(flow.stack_env_overrides(fake, folder / "mail"))
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DOCUMIND_TEST_SUBPROCESS="1",
        PYTHONUNBUFFERED="1",
        DATABASE_URL=postgres.url,
        REDIS_URL=redis.url,
        MEDIA_ROOT=str(folder / "media"),
        # the fake's vectors are random per text: semantic search is meaningless on them, but the
        # ingestion then waits on an HTTP server the test can slow down (the SIGKILL test)
        EMBEDDING_PROVIDER="openai",
        CELERY_VISIBILITY_TIMEOUT="20",
        CHAT_STALE_STREAM_SECONDS=str(STALE_SECONDS),
        RATELIMIT_PER_MINUTE=str(RATE_PER_MINUTE),
        RATELIMIT_AUTH_PER_MINUTE="1000",  # this module signs in often from 127.0.0.1
        AUTH_CODE_MAX_ATTEMPTS=str(CODE_ATTEMPTS),
    )
    env.setdefault("CELERY_TASK_DEFAULT_QUEUE", "documind-distributed-test")
    return env


@pytest.fixture(scope="module")
def dist(fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distributed]:
    require_redis_server()
    folder = tmp_path_factory.mktemp("distributed-stack")
    redis = RedisServer(folder / "redis").start()
    postgres = TcpPostgres(folder / "postgres")
    try:
        postgres.start()
        env = distributed_env(folder, redis, postgres, fake_openai_server)
        postgres.migrate(env)
        flow.create_tenant(env, TENANT, EMAIL)
    except BaseException:
        postgres.stop()
        redis.stop()
        raise
    stack = start_stack(folder, env, webs=2, workers=2, redis=redis, postgres=postgres)
    api_b = Api(stack.webs[1].base, TENANT)
    try:
        api_b.sign_in_with_code(EMAIL, folder / "mail")
        yield Distributed(stack, redis, postgres, folder / "mail", api_b)
    except BaseException:
        sys.stderr.write(stack.logs())  # shown with the failure
        raise
    finally:
        api_b.close()
        stack.close()


@pytest.fixture
def fake(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


STATE: dict[str, Any] = {}


# --- 1. the walk, across webs ---------------------------------------------------------------------
def test_a_socket_on_web_a_follows_an_upload_made_through_web_b(dist: Distributed, fake: FakeOpenAI) -> None:
    ready = httpx.get(f"{dist.a.base}/api/v1/health/ready", timeout=15)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["channel_layer"]["backend"] == "RedisChannelLayer"
    with dist.socket(dist.a) as socket:
        document_id, statuses = flow.upload_and_follow(dist.api_b, socket)  # upload on B, events on A
        flow.check_statuses(statuses)
        STATE["document_id"] = document_id
        STATE["chunks"] = dist.sql("SELECT count(*) FROM documents_chunk WHERE document_id = %s", document_id)[0][0]
        assert STATE["chunks"] >= 3
        response = dist.api_b.post(
            "/api/v1/search/", {"query": "lighthouse keeper cat Marmalade", "top_k": 3, "mode": "keyword"}
        )
        assert response.status_code == 200, response.text
        best = response.json()["results"][0]
        assert best["document_id"] == document_id and "Marmalade" in best["text"], best
        semantic = dist.api(dist.a).post("/api/v1/search/", {"query": "cat", "top_k": 50, "mode": "semantic"})
        assert semantic.status_code == 200, semantic.text
        assert {hit["document_id"] for hit in semantic.json()["results"]} == {document_id}
        flow.ask(socket, fake, document_id)


def test_cancel_on_web_a_and_resume_on_web_b(dist: Distributed, fake: FakeOpenAI) -> None:
    with dist.socket(dist.a) as socket:
        flow.cancel_one(dist.api_b, socket, fake)
    # asked on A, the socket drops, resumed on B while A still generates: followed through the database
    flow.resume_one(dist.api_b, dist.socket(dist.a), lambda: dist.socket(dist.b), fake)


def ended_cancelled(dist: Distributed, socket: Socket, start: Any, said: str) -> str:
    """The rest of the answer on ``socket``: it ends ``cancelled`` with part of the text, saved so."""
    events = socket.answer(start["message_id"], timeout=30)
    end = events[-1]
    assert end["status"] == "cancelled", events
    assert end["content"] == said + streamed_text(events) and 0 < len(end["content"]) < len(flow.LONG_ANSWER)
    row = dist.sql("SELECT status, content FROM chat_message WHERE id = %s", start["message_id"])
    assert row == [("cancelled", end["content"])], row
    return end["content"]


def test_an_answer_generating_on_web_a_is_cancelled_through_web_b(dist: Distributed, fake: FakeOpenAI) -> None:
    """The REST cancel, a socket's ``chat.cancel`` after a reconnect, and a session's deletion, each sent to
    web B, stop an answer web A generates (through the Redis channel layer)."""
    api_b = dist.api(dist.b)
    with dist.socket(dist.a) as socket:
        flow.cancel_through(api_b, socket, fake)

        start, said = flow.start_slow_answer(socket, fake)
        with dist.socket(dist.b) as other:  # a reconnect that landed on web B
            other.send({"type": "chat.resume", "message_id": start["message_id"]})
            other.wait_for(lambda e: e["type"] == "chat.start", timeout=30, what="chat.start")
            other.send({"type": "chat.cancel", "message_id": start["message_id"]})
            followed = other.answer(start["message_id"], timeout=30)
        content = ended_cancelled(dist, socket, start, said)
        assert followed[-1]["status"] == "cancelled" and followed[-1]["content"] == content, followed

        start, _ = flow.start_slow_answer(socket, fake)
        deleted = api_b.http.delete(f"/api/v1/chat/sessions/{start['session_id']}/", headers=api_b.headers())
        assert deleted.status_code == 204, deleted.text
        assert socket.answer(start["message_id"], timeout=30)[-1]["status"] == "cancelled"
    assert dist.a.log.read_text().count("chat_cancel_received") >= 3  # each came through the channel layer


# --- 2. a pool process SIGKILLed mid-ingest ---------------------------------------------------------
def pool_process_sending(dist: Distributed, fake: FakeOpenAI, marker: str) -> psutil.Process | None:
    """The worker pool process whose request to the fake OpenAI server mentions ``marker`` (found by the
    request's client port: a pool process can also hold an idle keep-alive connection to the fake)."""
    ports = {r.client_port for r in fake.requests_to("embeddings") if marker in json.dumps(r.body)}
    for worker in dist.stack.workers:
        for child in psutil.Process(worker.process.pid).children(recursive=True):
            try:
                if any(c.laddr and c.laddr.port in ports for c in child.net_connections(kind="tcp")):
                    return child
            except psutil.Error:
                continue
    return None


def test_a_pool_process_killed_mid_ingest_is_redelivered_without_duplicate_chunks(
    dist: Distributed, fake: FakeOpenAI
) -> None:
    assert STATE.get("chunks"), "needs the undisturbed ingestion of the first test"
    fake.set_fault("slow_first_token", endpoint="embeddings", times=1, delay=30)  # the first attempt hangs
    with dist.socket(dist.a) as socket:
        document = dist.api_b.upload("again.pdf", make_pdf([*MINUTES_PAGES, "One more page."]), title="Again")
        victim = wait_until(
            lambda: pool_process_sending(dist, fake, "One more page"), timeout=60, what="a pool process embedding"
        )
        assert dist.sql("SELECT status FROM documents_document WHERE id = %s", document["id"])[0][0] == "processing"
        victim.send_signal(signal.SIGKILL)
        statuses = socket.document_statuses(document["id"], timeout=120)
    assert statuses[-1]["status"] == "ready", statuses
    chunks = dist.sql(
        "SELECT count(*), count(DISTINCT (index)) FROM documents_chunk WHERE document_id = %s", document["id"]
    )[0]
    assert chunks[0] == chunks[1] > STATE["chunks"] - 1, chunks  # one chunk per index, all of them
    embeddings = [r for r in fake.requests_to("embeddings") if "One more page" in json.dumps(r.body)]
    assert len(embeddings) >= 2, "the killed attempt, then the redelivered one"
    [(attempts,)] = dist.sql("SELECT attempts FROM tasks_task WHERE id = %s", int(document["task"]["id"]))
    assert attempts >= 2


# --- 3. counters shared by both webs ------------------------------------------------------------------
def seconds_left_in_window(key: str, period: int = 60) -> float:
    """Seconds until django-ratelimit's window for ``key`` ends (its windows are staggered per key)."""
    import zlib

    now = time.time()
    ts = int(now)
    window = ts - (ts % period) + (zlib.crc32(key.encode()) % period)
    if window < ts:
        window += period
    return window - now


def add_member(dist: Distributed, email: str) -> None:
    created = dist.api(dist.a).post("/api/v1/users/", {"email": email, "role": "member"})
    assert created.status_code == 201, created.text


def test_the_general_rate_limit_is_counted_across_both_webs(dist: Distributed) -> None:
    email = "carol@distributed-e2e.test"  # a user of its own: the others keep their budget
    add_member(dist, email)
    carol = Api(dist.a.base, TENANT)
    user_id = carol.sign_in_with_code(email, dist.mail_dir)["user"]["id"]
    key = f"user:{user_id}"
    if seconds_left_in_window(key) < 25:  # the whole burst must fall in one window
        # django-ratelimit counts the second at which a window ends in that window: start one second after it
        time.sleep(seconds_left_in_window(key) + 1.2)
    apis = [Api(web.base, TENANT, token=carol.token) for web in (dist.a, dist.b)]
    statuses, trace = [], []  # trace: (status, seconds left in the window), shown by a failure
    for i in range(RATE_PER_MINUTE + 2):
        response = apis[i % 2].get("/api/v1/auth/me")
        statuses.append(response.status_code)
        trace.append((response.status_code, round(seconds_left_in_window(key), 1)))
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, trace
    assert set(statuses[:-1]) == {200}, trace
    # sign-in is counted per IP, not per user: the whole limit was left for the burst, and it is spent exactly
    # (per-process counters would allow twice as many)
    assert statuses.count(200) == RATE_PER_MINUTE, trace
    refused = apis[len(statuses) % 2].get("/api/v1/auth/me")  # the other web refuses too
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) <= 60, refused.text


def test_sign_in_code_attempts_are_counted_across_both_webs(dist: Distributed) -> None:
    email = "bob@distributed-e2e.test"
    add_member(dist, email)
    seen = set(dist.mail_dir.glob("*.log"))
    anon = {"a": Api(dist.a.base, TENANT), "b": Api(dist.b.base, TENANT)}
    assert anon["a"].post("/api/v1/auth/request-code", {"email": email}).status_code == 202
    from tests.e2e.client import read_code

    code = read_code(dist.mail_dir, email, after=seen)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for i in range(CODE_ATTEMPTS):
        response = anon["ab"[i % 2]].post("/api/v1/auth/verify-code", {"email": email, "code": wrong})
        assert response.status_code in (400, 401), response.text
    # five wrong guesses, spread over two processes, used the code up: the right one is refused now
    late = anon["b"].post("/api/v1/auth/verify-code", {"email": email, "code": code})
    assert late.status_code in (400, 401), late.text


# --- 4. web A killed mid-answer --------------------------------------------------------------------------
def test_web_a_killed_mid_answer_web_b_resumes_the_saved_text_and_it_ends_interrupted(
    dist: Distributed, fake: FakeOpenAI
) -> None:
    fake.reply = flow.LONG_ANSWER
    fake.token_delay = 0.2
    socket = dist.socket(dist.a)
    socket.send({"type": "chat.message", "content": MINUTES_QUESTION})
    start = socket.wait_for(lambda e: e["type"] == "chat.start", timeout=30, what="chat.start")
    message_id = start["message_id"]
    said = [socket.wait_for(lambda e: e["type"] == "chat.token", timeout=30) for _ in range(5)]
    # saved every CHAT_SAVE_INTERVAL_MS (250 ms): wait until the database holds some of it
    wait_until(
        lambda: dist.sql("SELECT length(content) FROM chat_message WHERE id = %s", message_id)[0][0] > 0,
        timeout=10,
        what="the partial answer saved",
    )
    dist.a.kill()
    killed_at = time.monotonic()
    saved = dist.sql("SELECT content, status FROM chat_message WHERE id = %s", message_id)[0]
    assert (saved[1] == "streaming" and streamed_text(said).startswith(saved[0])) or saved[0].startswith(
        streamed_text(said)
    )

    with dist.socket(dist.b) as other:
        other.send({"type": "chat.resume", "message_id": message_id})
        events = other.answer(message_id, timeout=STALE_SECONDS + 15)
    ended_after = time.monotonic() - killed_at
    assert events[0]["type"] == "chat.start" and events[0]["resumed"] is True, events
    assert streamed_text(events) == saved[0] and saved[0], events
    # "interrupted" is a failure of type interrupted (chat.models.Message.Status has no status of its own for it)
    error, end = events[-2], events[-1]
    assert error["type"] == "error" and error["error"]["type"] == "interrupted", events
    assert end["status"] == "failed" and end["error"]["type"] == "interrupted", events
    assert end["content"] == saved[0]
    assert ended_after < STALE_SECONDS + 5, f"took {ended_after:.1f}s"
    row = dist.sql("SELECT status, error->>'type', content FROM chat_message WHERE id = %s", message_id)[0]
    assert row == ("failed", "interrupted", saved[0])
    with contextlib.suppress(Exception):  # its server is gone
        socket.close()
    # a new web A for the tests after this one
    dist.stack.webs[0] = dist.stack.add_web("webA2")
    dist.stack.webs.pop()


# --- 5. Redis stopped and started again --------------------------------------------------------------------
def our_pids(dist: Distributed) -> set[int]:
    return {web.process.pid for web in dist.stack.webs} | {w.process.pid for w in dist.stack.workers}


def test_redis_down_then_back(dist: Distributed, fake: FakeOpenAI) -> None:
    pids = our_pids(dist)
    assert httpx.get(f"{dist.a.base}/api/v1/health/ready", timeout=15).status_code == 200
    dist.redis.stop()
    try:
        for web in (dist.a, dist.b):
            ready = httpx.get(f"{web.base}/api/v1/health/ready", timeout=30)
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["cache"]["status"] == "error"
        # the general API limit fails open, and says so in the log
        me = dist.api(dist.b).get("/api/v1/auth/me")
        assert me.status_code == 200, me.text
        assert "ratelimit_unavailable" in dist.b.output()
        # sign-in limits fail closed
        for path, body in (
            ("/api/v1/auth/request-code", {"email": EMAIL}),
            ("/api/v1/auth/login", {"email": EMAIL, "password": "whatever-it-is"}),
            ("/api/v1/auth/verify-code", {"email": EMAIL, "code": "123456"}),
        ):
            refused = Api(dist.a.base, TENANT).post(path, body)
            assert refused.status_code == 503, (path, refused.text)
            assert refused.json()["error"]["type"] == "service_unavailable"
    finally:
        dist.redis.start()  # the same port

    for web in (dist.a, dist.b):
        wait_until(
            lambda web=web: httpx.get(f"{web.base}/api/v1/health/ready", timeout=15).status_code == 200,
            timeout=30,
            interval=0.5,
            what=f"{web.name} ready again",
        )
    assert our_pids(dist) == pids and all(psutil.pid_exists(pid) for pid in pids), "nothing was restarted"
    # sockets, workers, the cache and sign-in work again
    fresh = Api(dist.b.base, TENANT)
    fresh.sign_in_with_code(EMAIL, dist.mail_dir)
    with Socket(dist.a.ws_base, fresh.token or "") as socket:
        document = fresh.upload("after.pdf", make_pdf(["After the outage, the cat still sleeps."]), title="After")
        statuses = socket.document_statuses(document["id"], timeout=120)
    assert statuses[-1]["status"] == "ready", statuses
