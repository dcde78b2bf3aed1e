"""Celery tasks for the tests only.

The worker subprocess imports this module with ``-I tests.tasks.worker_tasks`` (never through the
production task lists); the test process imports it to send them. The tasks write what they do to
a ``trace`` file (``<celery id> <event>`` lines) so the tests can see, from outside, where each
run stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from tasks.tracking import TaskCancelled, TrackedTask, report_progress


def _trace(path: str | None, line: str) -> None:
    if path:
        with Path(path).open("a") as fh:
            fh.write(line + "\n")


@shared_task(base=TrackedTask, bind=True, name="tests.tasks.steps")
def run_steps(
    self: Any,
    *,
    steps: int = 3,
    delay: float = 0.0,
    fail_at: int | None = None,
    fail_unless: str | None = None,
    trace: str | None = None,
    task_row_id: str,
) -> dict[str, Any]:
    """``steps`` progress reports ``delay`` seconds apart; fails at step ``fail_at`` or without ``fail_unless``."""
    run = self.request.id
    _trace(trace, f"{run} start")
    try:
        if fail_unless and not Path(fail_unless).exists():
            raise FileNotFoundError(f"{fail_unless} is missing")
        for step in range(1, steps + 1):
            report_progress(task_row_id, progress=step * 100 // (steps + 1), stage=f"step{step}")
            _trace(trace, f"{run} step {step}")
            if fail_at == step:
                raise ValueError(f"boom at step {step}")
            time.sleep(delay)
    except TaskCancelled:
        _trace(trace, f"{run} stopped")
        raise
    _trace(trace, f"{run} done")
    return {"steps": steps}


@shared_task(
    base=TrackedTask,
    bind=True,
    name="tests.tasks.flaky",
    autoretry_for=(ConnectionError,),
    max_retries=2,
    default_retry_delay=0,
)
def flaky(self: Any, *, failures: int, trace: str | None = None, task_row_id: str) -> dict[str, Any]:
    """Raises ConnectionError on its first ``failures`` attempts (Celery's autoretry runs it again)."""
    _trace(trace, f"{self.request.id} attempt {self.request.retries}")
    report_progress(task_row_id, progress=50, stage="trying")
    if self.request.retries < failures:
        raise ConnectionError(f"upstream unreachable on attempt {self.request.retries + 1}")
    return {"retries": self.request.retries}


@shared_task(base=TrackedTask, bind=True, name="tests.tasks.wait_for_file")
def wait_for_file(self: Any, *, path: str, trace: str | None = None, task_row_id: str) -> dict[str, Any]:
    """Waits until ``path`` exists: forever, unless the test makes it or a time limit stops the run.

    Traces ``start <pid> <monotonic time>`` (which pool process runs it, and when), ``soft limit
    <monotonic time>`` when Celery's ``SoftTimeLimitExceeded`` reaches it (re-raised), and ``done``.
    """
    run = self.request.id
    _trace(trace, f"{run} start {os.getpid()} {time.monotonic()}")
    report_progress(task_row_id, progress=10, stage="waiting")
    try:
        while not Path(path).exists():
            time.sleep(0.02)
    except SoftTimeLimitExceeded:
        _trace(trace, f"{run} soft limit {time.monotonic()}")
        raise
    _trace(trace, f"{run} done")
    return {"waited_for": path}
