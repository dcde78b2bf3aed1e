"""Keep the task ledger true from inside the workers.

Background work is a Celery task declared with ``base=TrackedTask`` (or a subclass) and called
with a ``task_row_id`` keyword argument (the ledger row). The base class records start, success,
failure, retry and cancellation on the row; :func:`report_progress` records progress, stage and
timings with one write, refreshes the heartbeat, publishes one event to the owner and is the
cancellation checkpoint. Bookkeeping errors are logged and never kill the task.

Usage::

    @shared_task(base=TrackedTask, bind=True, acks_late=True)
    def ingest_document(self, document_id: str, *, task_row_id: str) -> None:
        report_progress(task_row_id, progress=10, stage="extracting")
        ...

The row is the one record of a run (status, progress, stage, error, timings); what an app shows
of it is said by its :class:`TrackedTask` subclass, found from the row's ``celery_task_name`` in
Celery's own registry (:func:`tasks.ledger.tracked_task_for`; the row's transitions and their events
are in :mod:`tasks.ledger`):

* :meth:`TrackedTask.row_event` builds the event every change of the row publishes
  (``task.progress`` by default; ingestion sends ``document.status``);
* :meth:`TrackedTask.on_requeued` puts it back to waiting when the ledger's retry queues a new attempt;
* :meth:`TrackedTask.on_abandoned` puts the app's resource in step when the row ends outside its
  worker (cancelled before a worker picked it up, failed by the watchdog, never enqueued).

Which run owns the row: :func:`tasks.services.task_enqueue` stores the Celery id on the row before
the message is sent, and every hook below only touches the row while that id is still the row's (a
retry through the API enqueues a new id, so a late message or a still-running earlier run cannot
overwrite the new attempt). A row without a Celery id (the task was sent some other way) is claimed
by the first run that starts it.

Stopping: a run stops at its next checkpoint (:func:`checkpoint`, called by :func:`report_progress`)
when its row was cancelled, was marked failed by the watchdog, is gone, or belongs to another run.
The run then ends as "ignored" in Celery (no error, no autoretry), and the row says cancelled (or
keeps the final status someone else gave it). A run whose row is already cancelled when it is
picked up never starts its body.

A result dict returned by the task is stored on the row; its ``timings`` (stage → seconds), when
present, become the row's timings.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Task as CeleryTask
from celery import current_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_revoked
from django.utils import timezone

from tasks import events
from tasks.ledger import (
    _owned_by_other_run,
    error_type_of,
    mark_cancelled,
    mark_completed,
    mark_failed,
    mark_retrying,
    mark_started,
    publish_row,
    task_progress_event,
)
from tasks.models import Task

logger = logging.getLogger(__name__)


class TaskCancelled(Exception):
    """Raised at a checkpoint when this run must stop: the row was cancelled (or finished, or is gone)."""


def _row_id(kwargs: dict[str, Any] | None) -> str | None:
    return (kwargs or {}).get("task_row_id")


def _current_celery_id() -> str | None:
    task = current_task
    try:
        return task.request.id if task else None
    except Exception:  # no request context
        return None


# What report_progress reads of the row: enough to decide the checkpoint and build the event.
_PROGRESS_FIELDS = (
    "pk",
    "owner",
    "kind",
    "status",
    "celery_task_id",
    "celery_task_name",
    "payload",
    "error",
    "timings",
)


def _stop_reason(row_id: str, status: str | None, owner_run: str) -> str | None:
    """Why this run must stop at a checkpoint (row gone, final, or another run's), or None."""
    if status is None:
        return f"task {row_id} no longer exists"
    if status in Task.TERMINAL:
        return f"task {row_id} is {status}"
    running = _current_celery_id()
    if running and owner_run and running != owner_run:
        return f"task {row_id} was taken over by another run"
    return None


def checkpoint(row_id: str | None) -> None:
    """Raise :class:`TaskCancelled` if this run must stop.

    It must when the row is gone, cancelled, already final (the watchdog failed it), or belongs to
    another run (a retry took it over). Database errors here are logged and the run goes on.
    """
    if not row_id:
        return
    try:
        row = Task.objects.filter(pk=row_id).values_list("status", "celery_task_id").first()
    except Exception:
        logger.exception("task_checkpoint_failed", extra={"task_id": row_id})
        return
    reason = _stop_reason(row_id, *(row or (None, "")))
    if reason:
        raise TaskCancelled(reason)


def report_progress(row_id: str | None, *, progress: int, stage: str, timings: dict[str, float] | None = None) -> None:
    """Record progress, stage (and ``timings`` when given) and the heartbeat; publish the row's event.

    One read (the checkpoint: raises :class:`TaskCancelled` when the run must stop), one write and
    one event (the task's :meth:`TrackedTask.row_event`). Bookkeeping errors are logged.
    """
    if not row_id:
        return
    try:
        task = Task.objects.filter(pk=row_id).only(*_PROGRESS_FIELDS).first()
    except Exception:
        logger.exception("task_checkpoint_failed", extra={"task_id": row_id})
        return
    reason = _stop_reason(row_id, task.status if task else None, task.celery_task_id if task else "")
    if reason or task is None:
        raise TaskCancelled(reason)
    try:
        fields: dict[str, Any] = {
            "progress": max(0, min(100, int(progress))),
            "stage": stage[:40],
            "heartbeat_at": timezone.now(),
        }
        if timings is not None:
            fields["timings"] = timings
        Task.objects.filter(pk=row_id).update(**fields)
        for key, value in fields.items():
            setattr(task, key, value)
    except Exception:
        logger.exception("task_progress_bookkeeping_failed", extra={"task_id": row_id})
        return
    publish_row(task)


def heartbeat(row_id: str | None) -> None:
    """Refresh the heartbeat only (long steps without progress to report); also a checkpoint."""
    checkpoint(row_id)
    if not row_id:
        return
    try:
        Task.objects.filter(pk=row_id).update(heartbeat_at=timezone.now())
    except Exception:
        logger.exception("task_heartbeat_bookkeeping_failed", extra={"task_id": row_id})


class TrackedTask(CeleryTask):
    """Celery base class recording the lifecycle of a ledger row (``task_row_id`` kwarg).

    ``before_start`` marks the row processing (and skips the run, as "ignored", when the row is
    gone, cancelled or another run's); ``on_success`` completed; ``on_failure`` failed with the
    exception's code; ``retry`` (explicit or ``autoretry_for``) back to pending with the error; a
    :class:`TaskCancelled` raised at a checkpoint ends the run quietly and is never auto-retried.
    """

    dont_autoretry_for = (TaskCancelled,)

    def row_event(self, task: Task) -> events.TaskEvent | None:
        """The event a change of ``task`` (a row this Celery task runs) publishes; None for none.

        ``task.progress`` here; a subclass sends its own resource's event instead.
        """
        return task_progress_event(task)

    def on_requeued(self, task: Task) -> None:
        """Called inside the transaction of a retry through the ledger (``task`` is pending again, a
        new attempt is queued): a subclass moves its resource back to its waiting state."""

    def on_abandoned(self, task: Task) -> None:
        """Called after commit when ``task`` ended outside its worker (cancelled before a worker took
        it, failed by the watchdog, never enqueued): a subclass puts its resource in step."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except TaskCancelled as exc:
            try:
                mark_cancelled(_row_id(kwargs), celery_task_id=self.request.id)
            except Exception:
                logger.exception("task_cancel_bookkeeping_failed")
            logger.info("task_stopped_at_checkpoint", extra={"task_id": _row_id(kwargs), "reason": str(exc)})
            raise Ignore() from None

    def before_start(self, task_id: str, args: tuple, kwargs: dict) -> None:
        row_id = _row_id(kwargs)
        if not row_id:
            return
        try:
            task = mark_started(row_id, task_id)
        except Exception:
            logger.exception("task_start_bookkeeping_failed")
            return
        if task is None:
            logger.info("task_row_gone", extra={"task_id": row_id})
            raise Ignore()
        if task.status != Task.Status.PROCESSING or _owned_by_other_run(task, task_id):
            logger.info("task_run_skipped", extra={"task_id": row_id, "status": task.status})
            raise Ignore()

    def on_success(self, retval: Any, task_id: str, args: tuple, kwargs: dict) -> None:
        try:
            mark_completed(_row_id(kwargs), retval, celery_task_id=task_id)
        except Exception:
            logger.exception("task_success_bookkeeping_failed")

    def retry(  # type: ignore[override]
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: Any = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Celery's retry (also what ``autoretry_for`` calls), marking the row pending *first*.

        Doing it before the retry message exists (rather than in ``on_retry``, which runs after it
        was sent) means the next delivery, possibly on another worker, always finds the row pending
        and can never be overtaken by this run's bookkeeping. When no retry is left, Celery raises
        the original error instead and ``on_failure`` marks the row failed.
        """
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        will_retry = not request.called_directly and not (limit is not None and request.retries + 1 > limit)
        if will_retry:
            reason = exc or sys.exc_info()[1] or Exception("retry requested")
            try:
                mark_retrying(
                    _row_id(kwargs if kwargs is not None else request.kwargs), reason, celery_task_id=request.id
                )
            except Exception:
                logger.exception("task_retry_bookkeeping_failed")
        return super().retry(
            args=args,
            kwargs=kwargs,
            exc=exc,
            throw=throw,
            eta=eta,
            countdown=countdown,
            max_retries=max_retries,
            **options,
        )

    def _failure_message(self, exc: BaseException) -> str:
        """What the row says of a failure: the error's text, or which time limit stopped the run.

        Celery's time-limit errors carry no sentence (``SoftTimeLimitExceeded()``). The soft limit is
        the message's (set by the sender's settings) or else this worker's; the hard one (the pool
        process was killed; this runs in the worker's main process) is the error's argument.
        """
        if isinstance(exc, SoftTimeLimitExceeded):
            limits = getattr(self.request, "timelimit", None) or (None, None)
            seconds = limits[1] or self.soft_time_limit
            within = f" of {seconds:g} s" if seconds else ""
            return f"The task ran past its soft time limit{within} (CELERY_TASK_SOFT_TIME_LIMIT) and was stopped."
        if isinstance(exc, TimeLimitExceeded):
            seconds = exc.args[0] if exc.args and isinstance(exc.args[0], int | float) else None
            within = f" of {seconds:g} s" if seconds else ""
            return f"The task ran past its hard time limit{within} (CELERY_TASK_TIME_LIMIT): its process was killed."
        return str(exc) or type(exc).__name__

    def on_failure(self, exc: BaseException, task_id: str, args: tuple, kwargs: dict, einfo: Any) -> None:
        try:
            if isinstance(exc, TaskCancelled):
                mark_cancelled(_row_id(kwargs), celery_task_id=task_id)
            else:
                mark_failed(_row_id(kwargs), error_type_of(exc), self._failure_message(exc), celery_task_id=task_id)
        except Exception:
            logger.exception("task_failure_bookkeeping_failed")


@task_revoked.connect
def _on_revoked(sender: Any = None, request: Any = None, terminated: bool = False, **kwargs: Any) -> None:
    """A revoked message the worker discarded (or a terminated run): the row says cancelled."""
    if sender is not None and not isinstance(sender, TrackedTask):
        return
    try:
        mark_cancelled(_row_id(getattr(request, "kwargs", None)), celery_task_id=getattr(request, "id", None))
    except Exception:
        logger.exception("task_revoke_bookkeeping_failed")
