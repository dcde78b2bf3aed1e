"""A real Celery worker subprocess for the task-tracking tests, on the embedded filesystem broker or Redis.

The worker runs ``config.settings.test`` against this session's test database (``DATABASE_URL``
built from the live connection) and imports the test-only tasks of ``tests.tasks.worker_tasks``
with ``--include``. Tests that use it need ``transactional_db``: the worker only sees committed rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from celery import Task as CeleryTask
from django.conf import settings

from tasks.models import Task
from tests.conftest import redis_url
from tests.tasks.worker_tasks import READY_FILE_ENV

BASE_DIR = Path(settings.BASE_DIR)
WORKER_START_TIMEOUT = 90.0


def database_url(settings_dict: dict[str, Any]) -> str:
    """A ``DATABASE_URL`` for the database Django is connected to (unix socket folders in ``?host=``)."""
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or (settings_dict.get("OPTIONS") or {}).get("host") or ""
    port = settings_dict.get("PORT") or ""
    name = quote(settings_dict["NAME"])
    if host.startswith("/"):
        return f"postgresql://{auth}/{name}?{urlencode({'host': host, **({'port': port} if port else {})})}"
    return f"postgresql://{auth}{host}{':' + str(port) if port else ''}/{name}"


def filesystem_transport_options() -> dict[str, Any]:
    root = Path(settings.CELERY_BROKER_DIR)
    folders = {
        "data_folder_in": "queue",
        "data_folder_out": "queue",
        "processed_folder": "processed",
        "control_folder": "control",
    }
    for sub in set(folders.values()):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {**{key: str(root / sub) for key, sub in folders.items()}, "store_processed": False}


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a subprocess sharing this session's test database, broker folder and media."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DOCUMIND_TEST_SUBPROCESS="1",
        DATABASE_URL=database_url(connection.settings_dict),
        CELERY_BROKER_DIR=str(settings.CELERY_BROKER_DIR),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class CeleryWorker:
    """A running ``celery worker`` and how to send it work."""

    variant: str
    broker_url: str
    queue: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connection(self) -> Any:
        from config.celery import app

        options = filesystem_transport_options() if self.broker_url.startswith("filesystem") else {}
        return app.connection_for_write(self.broker_url, transport_options=options)

    def enqueue(self, celery_task: CeleryTask, row: Task, **kwargs: Any) -> str:
        """Send ``celery_task`` for ledger ``row`` (as ``task_enqueue`` does, on this worker's broker)."""
        celery_id = uuid.uuid4().hex
        Task.objects.filter(pk=row.pk).update(celery_task_id=celery_id)
        row.celery_task_id = celery_id
        with self.connection() as conn:
            celery_task.apply_async(
                kwargs={**kwargs, "task_row_id": str(row.pk)}, task_id=celery_id, connection=conn, queue=self.queue
            )
        return celery_id


def start_worker(variant: str, broker_url: str, folder: Path) -> CeleryWorker:
    """Start a worker on ``broker_url`` and wait until it consumes.

    It consumes the app's default queue when it shares the app's broker (the API enqueues there);
    otherwise a queue of its own, so that other sessions sharing a Redis cannot take its messages.
    (``CELERY_TASK_DEFAULT_QUEUE`` gives a whole session a queue of its own.)
    """
    ready = folder / "ready"
    queue = (
        settings.CELERY_TASK_DEFAULT_QUEUE
        if variant == settings_broker_variant()
        else f"documind-tasks-test-{uuid.uuid4().hex[:8]}"
    )
    log_path = folder / "worker.log"
    env = subprocess_env(
        CELERY_BROKER_URL=broker_url, LOG_LEVEL="INFO", LOG_FORMAT="console", **{READY_FILE_ENV: str(ready)}
    )
    cmd = [
        sys.executable, "-m", "celery", "-A", "config.celery", "worker",
        "--pool", "threads", "--concurrency", "2",
        "--include", "tests.tasks.worker_tasks",
        "--queues", queue,
        "--hostname", f"tasks-test-{variant}-{uuid.uuid4().hex[:8]}@%h",
        "--without-mingle", "--without-gossip", "--loglevel", "INFO",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    worker = CeleryWorker(variant, broker_url, queue, proc, log_path)
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_worker(worker)
            pytest.fail(f"the celery worker did not start ({variant}):\n{worker.log()[-4000:]}")
        time.sleep(0.1)
    return worker


def stop_worker(worker: CeleryWorker) -> None:
    if worker.proc.poll() is None:
        worker.proc.terminate()
        try:
            worker.proc.wait(30)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait(10)


def settings_broker_variant() -> str:
    return "filesystem" if settings.CELERY_BROKER_URL.startswith("filesystem") else "redis"


@pytest.fixture(scope="module", params=["filesystem", pytest.param("redis", marks=pytest.mark.redis)])
def worker(
    request: pytest.FixtureRequest,
    django_db_setup: Any,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryWorker]:
    """A celery worker subprocess for this module: ``filesystem`` (embedded default) or ``redis`` (REDIS_URL).

    Indirectly parametrize it with ``settings_broker_variant()`` for tests that enqueue through the
    app's own broker (the API's retry).
    """
    variant = request.param
    if variant == "redis":
        url = redis_url()
        if url is None:
            pytest.skip("Redis not available: set REDIS_URL to a running server to run this test (CI does)")
    else:
        url = "filesystem://"
    with django_db_blocker.unblock():
        worker = start_worker(variant, url, tmp_path_factory.mktemp(f"worker-{variant}"))
    try:
        yield worker
    finally:
        stop_worker(worker)


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return it), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {message() if callable(message) else message}")
        time.sleep(interval)
