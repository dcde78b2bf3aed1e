"""A real Celery worker subprocess for the task-tracking tests, on the embedded filesystem broker or Redis.

The worker is the shared one of :mod:`tests.subprocesses` (``config.settings.test`` against this
session's test database, ready once it answers ``health.ping``), with what is particular here: it
imports the test-only tasks of ``tests.tasks.worker_tasks`` (``include``), runs two threads, logs in
the console format the tests search, and consumes a queue per broker variant. Tests that use it
need ``transactional_db``: the worker only sees committed rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Task as CeleryTask
from django.conf import settings

from benchmarks._common import wait_until
from tasks.models import Task
from tests.subprocesses import WorkerProcess, build_subprocess_env, launch_celery_worker, stop_process_group

WORKER_START_TIMEOUT = 90.0


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


def broker_connection(broker_url: str) -> Any:
    """A connection of the app to ``broker_url`` (the filesystem transport needs its folders)."""
    from config.celery import app

    options = filesystem_transport_options() if broker_url.startswith("filesystem") else {}
    return app.connection_for_write(broker_url, transport_options=options)


@dataclass
class CeleryWorker:
    """A running ``celery worker`` and how to send it work."""

    variant: str
    broker_url: str
    queue: str
    process: WorkerProcess

    def log(self) -> str:
        return self.process.output()

    def connection(self) -> Any:
        return broker_connection(self.broker_url)

    def enqueue(self, celery_task: CeleryTask, row: Task, **kwargs: Any) -> str:
        """Send ``celery_task`` for ledger ``row`` (as ``task_enqueue`` does, on this worker's broker)."""
        celery_id = uuid.uuid4().hex
        Task.objects.filter(pk=row.pk).update(celery_task_id=celery_id, celery_task_name=celery_task.name)
        row.celery_task_id, row.celery_task_name = celery_id, celery_task.name
        with self.connection() as conn:
            celery_task.apply_async(
                kwargs={**kwargs, "task_row_id": str(row.pk)}, task_id=celery_id, connection=conn, queue=self.queue
            )
        return celery_id


def start_worker(variant: str, broker_url: str, folder: Path) -> CeleryWorker:
    """Start a worker on ``broker_url`` and wait until it consumes (it answers a ping sent to its queue).

    It consumes the app's default queue when it shares the app's broker (the API enqueues there);
    otherwise a queue of its own, so that other sessions sharing a Redis cannot take its messages.
    (``CELERY_TASK_DEFAULT_QUEUE`` gives a whole session a queue of its own.)
    """
    from health.tasks import ping

    shares_app_broker = variant == settings_broker_variant()
    queue = settings.CELERY_TASK_DEFAULT_QUEUE if shares_app_broker else f"documind-tasks-test-{uuid.uuid4().hex[:8]}"

    def send_ping(token: str) -> None:
        with broker_connection(broker_url) as conn:
            ping.apply_async((token,), connection=conn, queue=queue)

    process = launch_celery_worker(
        folder,
        env=build_subprocess_env(CELERY_BROKER_URL=broker_url, LOG_LEVEL="INFO", LOG_FORMAT="console"),
        pool="threads",
        concurrency=2,
        include=["tests.tasks.worker_tasks"],
        queues=[queue],
        hostname=f"tasks-test-{variant}-{uuid.uuid4().hex[:8]}@%h",
        ready_timeout=WORKER_START_TIMEOUT,
        purge=shares_app_broker,
        ping_send=send_ping,
    )
    return CeleryWorker(variant, broker_url, queue, process)


def stop_worker(worker: CeleryWorker) -> None:
    stop_process_group(worker.process.process, grace=30)


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
    url = request.getfixturevalue("redis_service") if variant == "redis" else "filesystem://"
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
    """Poll ``predicate`` until it returns something truthy (and return it), or fail the test after ``timeout``."""
    try:
        return wait_until(predicate, timeout=timeout, interval=interval)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {message() if callable(message) else message}")
