"""The whole product across processes: a real daphne, a real Celery worker, Redis, the real openai client.

Upload a PDF over REST, watch its ``document.status`` events arrive on the chat socket as the worker
ingests it, ask a question over the socket and get a streamed answer whose citation points at the
page of that PDF which holds the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.cache.backends.redis import RedisCache
from websockets.sync.client import connect

from accounts.authentication import tokens_for_user
from tests.documents.pdfs import MINUTES_PAGES, make_pdf
from tests.fake_openai import FakeOpenAI
from tests.subprocesses import build_subprocess_env, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def redis_ping_sender(url: str) -> Callable[[str], Any]:
    """Send ``health.ping`` on the Redis broker to this session's queue (the suite itself runs without Redis)."""
    from celery import Celery
    from django.conf import settings

    probe = Celery("probe", broker=url, set_as_current=False)
    probe.conf.task_serializer = "json"

    def send(token: str) -> None:
        probe.send_task("health.ping", args=[token], queue=settings.CELERY_TASK_DEFAULT_QUEUE)

    return send


def test_upload_ingest_events_and_a_cited_streamed_answer(
    require_redis: str, start_celery_worker: Any, fake_openai: FakeOpenAI, user: Any, tmp_path: Path
) -> None:
    env = build_subprocess_env(
        REDIS_URL=require_redis,
        **fake_openai.process_env(),
        CHAT_PROVIDER="openai",
        EMBEDDING_PROVIDER="hashing",
        CHUNK_TOKENS="60",
        CHUNK_OVERLAP="6",
        RATELIMIT_ENABLED="false",
        LOG_LEVEL="WARNING",
    )
    env.pop("CELERY_BROKER_URL", None)
    tokens = tokens_for_user(user)
    headers = {"Authorization": f"Bearer {tokens['access']}", "X-Tenant-ID": user.tenant.slug}
    fake_openai.reply = "The cat is called Marmalade [1]."

    with (
        start_celery_worker(
            env=env, purge=False, ping_send=redis_ping_sender(require_redis), ping_cache=RedisCache(require_redis, {})
        ),
        daphne_server(env, tmp_path / "daphne.log") as base,
    ):
        ws_url = base.replace("http", "ws") + f"/ws/chat/?token={tokens['access']}"
        with connect(ws_url, origin=base, open_timeout=10) as ws:
            # Idle for longer than the Redis channel layer's blocking read (5 s): the socket must survive.
            with pytest.raises(TimeoutError):
                ws.recv(timeout=6.5)
            response = httpx.post(
                f"{base}/api/v1/documents/",
                headers=headers,
                timeout=30,
                files={"file": ("minutes.pdf", make_pdf(MINUTES_PAGES), "application/pdf")},
                data={"title": "Committee minutes"},
            )
            assert response.status_code == 202, response.text
            document_id = response.json()["id"]

            statuses = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                event = json.loads(ws.recv(timeout=deadline - time.monotonic()))
                if event["type"] == "document.status" and event["document_id"] == document_id:
                    statuses.append(event["status"])
                    if event["status"] in ("ready", "failed"):
                        break
            assert statuses[-1] == "ready", statuses
            assert "processing" in statuses

            ws.send(json.dumps({"type": "chat.message", "content": "What is the lighthouse keeper's cat called?"}))
            events = []
            while not events or events[-1]["type"] != "chat.end":
                event = json.loads(ws.recv(timeout=30))
                if event["type"].startswith("chat.") or event["type"] == "error":
                    events.append(event)

    assert events[0]["type"] == "chat.start"
    end = events[-1]
    assert end["status"] == "completed", events
    assert "".join(e["delta"] for e in events if e["type"] == "chat.token") == end["content"]
    assert len([e for e in events if e["type"] == "chat.token"]) > 3
    [citation] = end["citations"]
    assert citation["document_id"] == document_id and citation["document_title"] == "Committee minutes"
    assert citation["page_start"] == citation["page_end"] == 2
    assert "Marmalade" in citation["snippet"]
    # the model really was asked, through the real client, with the PDF's page as source [1]
    system = fake_openai.requests_to("chat")[0].body["messages"][0]["content"]
    assert "[1] Committee minutes (page 2)" in system
