"""Writes to the task ledger: background tasks (enqueue, cancel, retry, watchdog) and to-dos.

State changes go through the state machine of :class:`tasks.models.Task`; a change it does not
allow is a :class:`config.errors.Conflict` (409). Status changes are published to the owner once
the transaction commits, as the event of the row's Celery task (:func:`tasks.ledger.publish_row`:
``task.progress``, or ``document.status`` for ingestion). A background row names its Celery task
(``celery_task_name``); retry looks it up in Celery's registry, and a row that ends outside its worker
calls that task's :meth:`~tasks.tracking.TrackedTask.on_abandoned`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from celery import Task as CeleryTask
from django.conf import settings
from django.db import transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from config.errors import Conflict
from tasks.ledger import publish_row, run_abandoned_hook, tracked_task_for
from tasks.models import Task
from tenants.models import Tenant

logger = logging.getLogger(__name__)

STALLED = "stalled"
TODO_STATUSES = (Task.Status.PENDING, Task.Status.PROCESSING, Task.Status.COMPLETED, Task.Status.CANCELLED)


# --- background tasks ------------------------------------------------------------------------


@transaction.atomic
def task_create_background(
    *,
    tenant: Tenant,
    owner: User,
    kind: str,
    title: str,
    celery_task: CeleryTask,
    payload: dict[str, Any] | None = None,
) -> Task:
    """A pending background task row for ``owner``, run by ``celery_task`` with ``payload`` as kwargs."""
    return Task.objects.create(
        tenant=tenant,
        owner=owner,
        kind=kind,
        title=title[:255],
        celery_task_name=celery_task.name,
        payload=payload or {},
        stage="queued",
    )


def task_enqueue(*, task: Task, celery_task: CeleryTask, kwargs: dict[str, Any] | None = None) -> str:
    """Enqueue ``celery_task`` for ledger row ``task`` once the current transaction commits.

    The Celery id is chosen here and stored on the row first, so cancel can revoke it at once and
    the worker can tell this run from an earlier one.
    """
    celery_id = uuid.uuid4().hex
    Task.objects.filter(pk=task.pk).update(celery_task_id=celery_id, celery_task_name=celery_task.name)
    task.celery_task_id, task.celery_task_name = celery_id, celery_task.name
    call_kwargs = {**(kwargs or {}), "task_row_id": str(task.pk)}

    def send() -> None:
        try:
            celery_task.apply_async(kwargs=call_kwargs, task_id=celery_id)
        except Exception as exc:
            # The broker is down: the request already committed its rows, so say so on the row
            # (and let the owning app put its resource in step) instead of a 500 and a task pending forever.
            logger.exception("task_enqueue_failed", extra={"task_id": task.pk, "celery_task_id": celery_id})
            with transaction.atomic():
                failed = task_mark_enqueue_failed(task_id=task.pk, celery_id=celery_id, error=exc)
            if failed is not None:
                publish_row(failed)

    transaction.on_commit(send)
    return celery_id


def task_mark_enqueue_failed(*, task_id: int, celery_id: str, error: Exception) -> Task | None:
    """Fail a pending row whose Celery message could not be sent (error type ``enqueue_failed``)."""
    task = (
        Task.objects.select_for_update()
        .filter(pk=task_id, celery_task_id=celery_id, status=Task.Status.PENDING)
        .first()
    )
    if task is None:
        return None
    task.status = Task.Status.FAILED
    task.finished_at = timezone.now()
    task.error = {
        "type": "enqueue_failed",
        "message": f"The task queue could not be reached ({type(error).__name__}); retry it.",
    }
    task.save(update_fields=["status", "finished_at", "error", "updated_at"])
    transaction.on_commit(lambda: run_abandoned_hook(task))
    return task


def _locked(task: Task) -> Task:
    """The row, re-read under a row lock (the workers lock it too)."""
    return Task.objects.select_for_update().get(pk=task.pk)


def _publish_on_commit(task: Task, *, abandoned: bool = False) -> None:
    """After commit: for background work that ended outside its worker (``abandoned``) its task's
    :meth:`~tasks.tracking.TrackedTask.on_abandoned`, then the row's event."""

    def after_commit() -> None:
        if abandoned:
            run_abandoned_hook(task)
        publish_row(task)

    transaction.on_commit(after_commit)


def _conflict_transition(task: Task, new: str, message: str | None = None) -> Conflict:
    allowed = sorted(Task.TRANSITIONS.get(task.status, set()))
    return Conflict(
        message or f"A {task.status} task cannot become {new}.",
        details={"status": task.status, "requested": new, "allowed": allowed},
    )


def revoke_celery_task(celery_task_id: str) -> bool:
    """Ask the workers to drop ``celery_task_id`` (best effort; returns whether the broadcast was sent).

    The filesystem broker may not deliver broadcasts, which is why workers also look at the row at
    every checkpoint; this only saves a queued message from ever starting.
    """
    if not celery_task_id:
        return False
    try:
        from config.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            app.control.revoke(celery_task_id, connection=conn)
        return True
    except Exception:
        logger.warning("task_revoke_failed", exc_info=True, extra={"celery_task_id": celery_task_id})
        return False


@transaction.atomic
def task_cancel(*, task: Task) -> Task:
    """Cancel a pending or processing task (a to-do, or background work: revoked after commit).

    A task already cancelled is returned as it is; a completed or failed one is a conflict.
    """
    task = _locked(task)
    if task.status == Task.Status.CANCELLED:
        return task
    if task.status not in (Task.Status.PENDING, Task.Status.PROCESSING):
        raise _conflict_transition(
            task, Task.Status.CANCELLED, f"The task is already {task.status}; it cannot be cancelled."
        )
    task.status = Task.Status.CANCELLED
    task.finished_at = timezone.now()
    update_fields = ["status", "finished_at", "updated_at"]
    if task.is_background:
        task.stage = "cancelled"
        update_fields.append("stage")
        celery_id = task.celery_task_id
        transaction.on_commit(lambda: revoke_celery_task(celery_id))
    task.save(update_fields=update_fields)
    _publish_on_commit(task, abandoned=task.is_background)
    return task


@transaction.atomic
def task_retry(*, task: Task) -> Task:
    """Run a failed or cancelled background task again, as a new attempt with a new Celery id.

    The Celery task named on the row (``celery_task_name``, looked up in Celery's registry) gets
    the row's ``payload`` as keyword arguments. To-dos, unfinished tasks and rows whose Celery task
    this installation does not know are conflicts. The task's
    :meth:`~tasks.tracking.TrackedTask.on_requeued` runs in the same transaction.
    """
    task = _locked(task)
    if not task.is_background:
        raise Conflict(
            "To-dos are not retried; reopen one by setting its status to pending.", details={"kind": task.kind}
        )
    if task.status not in (Task.Status.FAILED, Task.Status.CANCELLED):
        raise _conflict_transition(
            task, Task.Status.PENDING, f"Only failed or cancelled tasks can be retried; this one is {task.status}."
        )
    celery_task = tracked_task_for(task)
    if celery_task is None:
        raise Conflict(
            f"No worker task named {task.celery_task_name!r} is known here; it cannot be run again.",
            details={"kind": task.kind, "celery_task": task.celery_task_name},
        )
    task.status = Task.Status.PENDING
    task.progress = 0
    task.stage = "queued"
    task.error = {}
    task.result = {}
    task.started_at = task.finished_at = task.heartbeat_at = None
    task.save()
    celery_task.on_requeued(task)  # in this transaction: the resource waits again with its row
    task_enqueue(task=task, celery_task=celery_task, kwargs=dict(task.payload or {}))
    _publish_on_commit(task)
    return task


@transaction.atomic
def task_fail_stalled(*, timeout_seconds: int | None = None, now: datetime | None = None) -> list[Task]:
    """Mark background tasks processing without a heartbeat (or start) for ``timeout_seconds`` as failed, ``stalled``.

    Rows a worker holds locked right now are alive and skipped. Returns the rows it failed.
    """
    timeout = settings.TASK_STALL_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=timeout)
    stalled = list(
        Task.objects.select_for_update(skip_locked=True, of=("self",))
        .annotate(last_seen=Coalesce("heartbeat_at", "started_at", "updated_at"))
        .filter(status=Task.Status.PROCESSING, last_seen__lt=cutoff)
        .exclude(kind=Task.Kind.TODO)  # a person's to-do "in progress" has no worker and no heartbeat
        .order_by("pk")
    )
    for task in stalled:
        last_seen = task.last_seen  # type: ignore[attr-defined]
        task.status = Task.Status.FAILED
        task.finished_at = now
        task.error = {
            "type": STALLED,
            "message": f"No sign of life from the worker since {last_seen.isoformat()} "
            f"(more than {timeout} s); the task was given up. Retry it to run it again.",
        }
        task.save(update_fields=["status", "finished_at", "error", "updated_at"])
        _publish_on_commit(task, abandoned=True)
        logger.warning(
            "task_stalled", extra={"task_id": task.pk, "kind": task.kind, "last_seen": last_seen.isoformat()}
        )
    return stalled


# --- to-dos ----------------------------------------------------------------------------------


def _require_todo(task: Task, action: str) -> None:
    if task.is_background:
        raise Conflict(
            f"This is a background task ({task.kind}); it cannot be {action}. "
            "Background tasks are changed only by their workers: cancel or retry them instead.",
            details={"kind": task.kind, "status": task.status},
        )


def _set_todo_status(task: Task, status: str) -> None:
    if task.status == status:
        return
    if not Task.can_transition(task.status, status):
        raise _conflict_transition(task, status)
    task.status = status
    if status == Task.Status.COMPLETED:
        task.completed_at = timezone.now()
        task.progress = 100
    elif status in (Task.Status.PENDING, Task.Status.PROCESSING):
        task.completed_at = None
        if task.progress == 100:
            task.progress = 0


@transaction.atomic
def task_create_todo(
    *, tenant: Tenant, owner: User, title: str, description: str = "", due_at: datetime | None = None
) -> Task:
    """A new pending to-do of ``owner``."""
    return Task.objects.create(
        tenant=tenant, owner=owner, kind=Task.Kind.TODO, title=title, description=description, due_at=due_at
    )


@transaction.atomic
def task_update_todo(*, task: Task, data: dict[str, Any]) -> Task:
    """Change a to-do's title, description, due date and status (through the state machine)."""
    task = _locked(task)
    _require_todo(task, "changed")
    for field in ("title", "description", "due_at"):
        if field in data:
            setattr(task, field, data[field])
    old_status = task.status
    if "status" in data:
        _set_todo_status(task, data["status"])
    task.save()
    if task.status != old_status:
        _publish_on_commit(task)
    return task


@transaction.atomic
def task_complete(*, task: Task) -> Task:
    """Mark a to-do completed (a completed one is returned as it is)."""
    task = _locked(task)
    _require_todo(task, "completed by hand")
    if task.status != Task.Status.COMPLETED:
        _set_todo_status(task, Task.Status.COMPLETED)
        task.save()
        _publish_on_commit(task)
    return task


@transaction.atomic
def task_delete(*, task: Task) -> None:
    """Delete a to-do; background tasks stay in the ledger."""
    task = _locked(task)
    _require_todo(task, "deleted")
    task.delete()
