"""Celery across processes (filesystem broker and Redis), request ids in task logs, and worker events
reaching a channel-layer receiver in this process (PostgreSQL layer and Redis layer)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import pytest
import structlog
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import override_settings

from config.celery import app
from health.tasks import ping, ping_key
from tasks.events import user_group
from tests.subprocesses import WorkerProcess, build_subprocess_env

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def json_lines(text: str) -> list[dict[str, Any]]:
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def wait_for_log(worker: WorkerProcess, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in json_lines(worker.output()):
            if predicate(record):
                return record
        time.sleep(0.2)
    raise AssertionError(f"no matching log line; worker output:\n{worker.output()[-3000:]}")


def test_celery_settings() -> None:
    conf = app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_url == settings.CELERY_BROKER_URL
    step_names = {getattr(step, "__name__", str(step)) for step in app.steps["worker"]}
    assert "DjangoStructLogInitStep" in step_names


def test_task_logs_carry_the_request_id_that_enqueued_them(celery_worker_proc: WorkerProcess) -> None:
    token = uuid.uuid4().hex
    # what django-structlog's middleware binds for a request; its publish hook copies it into the headers
    with structlog.contextvars.bound_contextvars(request_id="enqueue-req-0042", user_id="user-7"):
        ping.delay(token)
    record = wait_for_log(celery_worker_proc, lambda r: r.get("event") == "health_ping" and r.get("token") == token)
    assert record["request_id"] == "enqueue-req-0042"
    assert record["user_id"] == "user-7"
    assert record["task_id"]
    started = wait_for_log(
        celery_worker_proc, lambda r: r.get("event") == "task_started" and r.get("task_id") == record["task_id"]
    )
    assert started["request_id"] == "enqueue-req-0042"


def test_a_request_enqueuing_a_task_hands_its_request_id_to_the_worker(
    celery_worker_proc: WorkerProcess, client: Any
) -> None:
    """Through the real middleware: a view that enqueues (drf test view) logs its request id in the worker."""
    from django.urls import path
    from rest_framework.decorators import api_view, authentication_classes, permission_classes
    from rest_framework.permissions import AllowAny
    from rest_framework.response import Response

    token = uuid.uuid4().hex

    @api_view(["POST"])
    @authentication_classes([])
    @permission_classes([AllowAny])
    def enqueue(request: Any) -> Response:
        ping.delay(token)
        return Response(status=202)

    import tests.foundation.urls as foundation_urls

    urlconf = type("URLConf", (), {"urlpatterns": [path("enqueue", enqueue), *foundation_urls.urlpatterns]})
    with override_settings(ROOT_URLCONF=urlconf):
        response = client.post("/enqueue", HTTP_X_REQUEST_ID="from-the-browser-77")
    assert response.status_code == 202
    record = wait_for_log(celery_worker_proc, lambda r: r.get("event") == "health_ping" and r.get("token") == token)
    assert record["request_id"] == "from-the-browser-77"


@pytest.mark.redis
def test_a_worker_on_the_redis_broker(require_redis: str, start_celery_worker: Any) -> None:
    """The distributed mode: broker and cache in Redis (a separate Celery app sends, as another host would)."""
    from celery import Celery
    from django.core.cache.backends.redis import RedisCache

    sender = Celery("probe", broker=require_redis, set_as_current=False)
    sender.conf.task_serializer = "json"
    # the worker consumes this session's own queue (config.settings.test), not Celery's default one
    sender.conf.task_default_queue = settings.CELERY_TASK_DEFAULT_QUEUE
    redis_cache = RedisCache(require_redis, {})
    env = build_subprocess_env(REDIS_URL=require_redis)
    env.pop("CELERY_BROKER_URL", None)

    def send(token: str) -> None:
        sender.send_task("health.ping", args=[token])

    with start_celery_worker(env=env, purge=False, ping_send=send, ping_cache=redis_cache) as worker:
        token = uuid.uuid4().hex
        with structlog.contextvars.bound_contextvars(request_id="redis-req-0001"):
            send(token)
        wait_for_log(worker, lambda r: r.get("event") == "health_ping" and r.get("token") == token)
        assert redis_cache.get(ping_key(token))
        assert "redis://" in worker.output()


def _postgres_layer() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    return {
        "default": {
            "BACKEND": "config.channel_layers.PostgresChannelLayer",
            "CONFIG": {
                **{k: db[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")},
                "TIME_ZONE": None,
                "OPTIONS": {},
                "CONN_MAX_AGE": 0,
                "CONN_HEALTH_CHECKS": False,
                "AUTOCOMMIT": True,
                "PSYCOPG_OPTIONS": {"min_size": 1, "max_size": 2},
            },
        }
    }


PUBLISH = """
import django
django.setup()
from tasks.events import publish, task_progress_event
publish({user_id!r}, task_progress_event(task_id={task_id!r}, kind="ingest", status="processing", progress=40, stage="embedding"))
print("published")
"""


async def _receive_event_published_by_a_subprocess(env: dict[str, str]) -> dict[str, Any]:
    layer = get_channel_layer()
    user_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    channel = await layer.new_channel()
    await layer.group_add(user_group(user_id), channel)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISH.format(user_id=user_id, task_id=task_id), cwd=str(settings.BASE_DIR), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0 and b"published" in stdout, stderr.decode()[-2000:]
        message = await asyncio.wait_for(layer.receive(channel), timeout=20)
    finally:
        await layer.group_discard(user_group(user_id), channel)
    assert message == {
        "type": "task.progress",
        "task_id": task_id,
        "kind": "ingest",
        "status": "processing",
        "progress": 40,
        "stage": "embedding",
    }
    return message


async def test_an_event_published_by_another_process_reaches_this_one_over_postgres() -> None:
    env = build_subprocess_env()
    env.pop("REDIS_URL", None)
    with override_settings(CHANNEL_LAYERS=_postgres_layer()):
        await _receive_event_published_by_a_subprocess(env)


@pytest.mark.redis
async def test_an_event_published_by_another_process_reaches_this_one_over_redis(require_redis: str) -> None:
    env = build_subprocess_env(REDIS_URL=require_redis)
    layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [require_redis]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        await _receive_event_published_by_a_subprocess(env)
