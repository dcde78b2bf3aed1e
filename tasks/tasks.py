"""Celery tasks of the tasks app: the watchdog that keeps "processing" honest."""

from __future__ import annotations

from celery import shared_task

from tasks.services import task_fail_stalled


@shared_task(name="tasks.watchdog", ignore_result=True)
def watchdog() -> int:
    """Fail processing tasks whose heartbeat is older than ``TASK_STALL_TIMEOUT_SECONDS``; returns how many."""
    return len(task_fail_stalled())
