"""A task that hits its soft time limit, in a real prefork worker (``CELERY_TASK_SOFT_TIME_LIMIT``, README).

The worker gets a 1 s soft limit (and a hard one of 60 s) from its own environment; the messages
carry no limit (``soft_time_limit=None``), so the worker's settings decide, as they do for a message
sent without one. The task waits for a file that is never made, so nothing but the limit can end it,
whatever the machine's load: no sleep decides the outcome. Its trace file says what happened inside
the pool process (with ``time.monotonic()``, one clock for every process of the machine).

A soft limit must fail the run with a clear error on its ledger row (never leave the row
processing), and leave the pool process alive: the same process then runs the next task.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from tasks.models import Task
from tests.subprocesses import WorkerProcess, build_subprocess_env, launch_celery_worker, stop_process_group
from tests.tasks.conftest import wait_for
from tests.tasks.test_worker_tracking import make_row, reload, trace_lines
from tests.tasks.worker_tasks import wait_for_file

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SOFT_LIMIT = 1


@pytest.fixture
def limited_worker(transactional_db: Any, tmp_path: Path) -> Iterator[tuple[WorkerProcess, str]]:
    """A prefork worker (one pool process) with a 1 s soft limit, on a queue of its own."""
    from health.tasks import ping

    queue = f"documind-soft-limit-{uuid.uuid4().hex[:8]}"
    worker = launch_celery_worker(
        tmp_path,
        env=build_subprocess_env(CELERY_TASK_SOFT_TIME_LIMIT=str(SOFT_LIMIT), CELERY_TASK_TIME_LIMIT="60"),
        pool="prefork",
        concurrency=1,
        log_format="console",
        include=["tests.tasks.worker_tasks"],
        queues=[queue],
        purge=False,
        ping_send=lambda token: ping.apply_async((token,), queue=queue),
    )
    try:
        yield worker, queue
    finally:
        stop_process_group(worker.process)


def send(row: Task, queue: str, **kwargs: Any) -> str:
    """Send ``wait_for_file`` for ``row`` with no time limit in the message (the worker's apply)."""
    celery_id = uuid.uuid4().hex
    Task.objects.filter(pk=row.pk).update(celery_task_id=celery_id, celery_task_name=wait_for_file.name)
    wait_for_file.apply_async(
        kwargs={**kwargs, "task_row_id": str(row.pk)}, task_id=celery_id, queue=queue,
        soft_time_limit=None, time_limit=None,
    )  # fmt: skip
    return celery_id


def wait_status(row: Task, status: str, worker: WorkerProcess) -> Task:
    def current() -> Task | None:
        fresh = reload(row)
        return fresh if fresh.status == status else None

    def why() -> str:
        fresh = reload(row)
        return f"task {row.pk} to become {status}; it is {fresh.status} ({fresh.error})\n{worker.output()[-3000:]}"

    return wait_for(current, timeout=60, message=why)


def test_a_task_over_its_soft_time_limit_fails_clearly_and_its_pool_process_lives_on(
    limited_worker: tuple[WorkerProcess, str], user: User, tmp_path: Path
) -> None:
    worker, queue = limited_worker
    trace = tmp_path / "trace"
    row = make_row(user, kind="test_wait", celery_task=wait_for_file)
    run = send(row, queue, path=str(tmp_path / "never-made"), trace=str(trace))

    failed = wait_status(row, Task.Status.FAILED, worker)

    lines = trace_lines(trace, run)
    assert [line.split()[0] for line in lines] == ["start", "soft"], lines  # the body saw the soft limit
    _, pid, started_at = lines[0].split()
    stopped_at = float(lines[1].split()[-1])
    assert stopped_at - float(started_at) >= SOFT_LIMIT - 0.05, lines  # not before the limit
    assert failed.error == {
        "type": "soft_time_limit_exceeded",
        "message": "The task ran past its soft time limit of 1 s (CELERY_TASK_SOFT_TIME_LIMIT) and was stopped.",
    }
    assert (failed.stage, failed.progress, failed.attempts) == ("waiting", 10, 1)
    assert failed.finished_at is not None

    # the pool process survived the soft limit (a hard limit kills it): it runs the next task
    done = tmp_path / "made"
    done.touch()
    second = make_row(user, kind="test_wait", celery_task=wait_for_file)
    next_run = send(second, queue, path=str(done), trace=str(trace))
    completed = wait_status(second, Task.Status.COMPLETED, worker)
    assert completed.result == {"waited_for": str(done)}
    next_lines = wait_for(lambda: trace_lines(trace, next_run), message="the next run's trace")
    assert next_lines[0].split()[1] == pid, (lines, next_lines)
    assert reload(row).status == Task.Status.FAILED  # and nothing came back to the first row
