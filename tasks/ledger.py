"""What happens to a background task's ledger row, from any process: its transitions and its events.

The row moves through the state machine of :class:`tasks.models.Task` only by :func:`_transition`
(under a row lock, and only for the run that owns the row: see :mod:`tasks.tracking`); every change
is published after the commit as the event of the row's Celery task (:func:`publish_row`). The Celery
task is found by the row's ``celery_task_name`` in Celery's own registry (:func:`tracked_task_for`);
its :class:`~tasks.tracking.TrackedTask` methods say what the row means to its app (``row_event``,
``on_abandoned``). Bookkeeping errors in publishing and hooks are logged, never raised.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from tasks import events
from tasks.models import Task

if TYPE_CHECKING:
    from tasks.tracking import TrackedTask

logger = logging.getLogger(__name__)


def tracked_task_for(task: Task) -> TrackedTask | None:
    """The :class:`TrackedTask` that runs ``task`` (``app.tasks[task.celery_task_name]``), or None."""
    name = task.celery_task_name
    if not name:
        return None
    from config.celery import app

    celery_task = app.tasks.get(name)
    if celery_task is None:  # this process has not imported the app's task modules yet
        app.loader.import_default_modules()
        celery_task = app.tasks.get(name)
    from tasks.tracking import TrackedTask  # the base class imports this module

    return celery_task if isinstance(celery_task, TrackedTask) else None


def publish_row(task: Task) -> None:
    """Publish the row's event (its task's :meth:`TrackedTask.row_event`) to its owner; never raises."""
    try:
        tracked = tracked_task_for(task)
        event = tracked.row_event(task) if tracked is not None else task_progress_event(task)
    except Exception:
        logger.exception("task_event_build_failed", extra={"task_id": task.pk})
        return
    if event is not None:
        events.publish(task.owner_id, event)


def task_progress_event(task: Task) -> events.TaskProgressEvent:
    """The ``task.progress`` event of a row."""
    return events.task_progress_event(
        task_id=task.pk, kind=task.kind, status=task.status, progress=task.progress, stage=task.stage
    )


def run_abandoned_hook(task: Task) -> None:
    """Call the row's :meth:`TrackedTask.on_abandoned` (after commit); errors are logged, never raised."""
    try:
        tracked = tracked_task_for(task)
        if tracked is not None:
            tracked.on_abandoned(task)
    except Exception:
        logger.exception("task_abandoned_hook_failed", extra={"task_id": task.pk, "celery_task": task.celery_task_name})


def _owned_by_other_run(task: Task, celery_task_id: str | None) -> bool:
    return bool(celery_task_id and task.celery_task_id and task.celery_task_id != celery_task_id)


def _transition(
    row_id: str | None,
    status: str,
    *,
    celery_task_id: str | None = None,
    expected: set[str] | None = None,
    claim: bool = False,
    bump_attempts: bool = False,
    **fields: Any,
) -> Task | None:
    """Move the row to ``status`` if the state machine allows it; returns the row as it now is.

    ``celery_task_id`` names the run asking: a row that belongs to another run is left alone.
    ``expected`` narrows the statuses the move may start from. ``claim`` stores the run's id on a
    row that has none. The event is published after the commit, only when the row changed.
    """
    if not row_id:
        return None
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=row_id).first()
        if task is None:
            return None
        if _owned_by_other_run(task, celery_task_id):
            logger.info(
                "task_transition_stale_run",
                extra={"task_id": row_id, "celery_task_id": celery_task_id, "owner_run": task.celery_task_id},
            )
            return task
        if (expected is not None and task.status not in expected) or not Task.can_transition(task.status, status):
            logger.info("task_transition_ignored", extra={"task_id": row_id, "from": task.status, "to": status})
            return task
        task.status = status
        for key, value in fields.items():
            setattr(task, key, value)
        if claim and celery_task_id and not task.celery_task_id:
            task.celery_task_id = celery_task_id
        if bump_attempts:
            task.attempts += 1
        task.save()
        # After the commit (at once in a worker's autocommit): a client reacting to the event finds the
        # row, and whatever the run committed before it (an ingestion's chunks), already there.
        transaction.on_commit(lambda: publish_row(task))
    return task


def mark_started(row_id: str | None, celery_task_id: str | None = None) -> Task | None:
    """pending → processing (stage ``starting``) for the run ``celery_task_id`` (a new attempt); returns the row."""
    now = timezone.now()
    return _transition(
        row_id,
        Task.Status.PROCESSING,
        celery_task_id=celery_task_id,
        claim=True,
        bump_attempts=True,
        started_at=now,
        heartbeat_at=now,
        finished_at=None,
        error={},
        stage="starting",
    )


def mark_completed(row_id: str | None, result: Any = None, *, celery_task_id: str | None = None) -> Task | None:
    """→ completed with ``result`` (when it is a dict), progress 100."""
    fields: dict[str, Any] = {"progress": 100, "finished_at": timezone.now(), "stage": "done"}
    if isinstance(result, dict):
        fields["result"] = result
        if isinstance(result.get("timings"), dict):
            fields["timings"] = result["timings"]
    return _transition(row_id, Task.Status.COMPLETED, celery_task_id=celery_task_id, **fields)


def mark_failed(row_id: str | None, error_type: str, message: str, *, celery_task_id: str | None = None) -> Task | None:
    """→ failed with ``{"type": error_type, "message": message}``."""
    return _transition(
        row_id,
        Task.Status.FAILED,
        celery_task_id=celery_task_id,
        finished_at=timezone.now(),
        error={"type": error_type, "message": message[:2000]},
    )


def mark_cancelled(row_id: str | None, *, celery_task_id: str | None = None) -> Task | None:
    """pending/processing → cancelled (a row already cancelled is left as it is)."""
    return _transition(
        row_id,
        Task.Status.CANCELLED,
        celery_task_id=celery_task_id,
        expected={Task.Status.PENDING, Task.Status.PROCESSING},
        finished_at=timezone.now(),
        stage="cancelled",
    )


def mark_retrying(row_id: str | None, exc: BaseException, *, celery_task_id: str | None = None) -> Task | None:
    """processing → pending while Celery waits to retry; the error says why."""
    return _transition(
        row_id,
        Task.Status.PENDING,
        celery_task_id=celery_task_id,
        expected={Task.Status.PROCESSING},
        stage="retrying",
        error={"type": error_type_of(exc), "message": (str(exc) or type(exc).__name__)[:2000]},
    )


def error_type_of(exc: BaseException) -> str:
    """The envelope-style code of an exception (DomainError.code, else snake_case of its class)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
