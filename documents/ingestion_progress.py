"""How an ingestion run reports to its task row, and what that row says about its document.

The task row (``tasks.Task``) is the one record of a run's progress, stage, error and per-stage
timings. A run reports through :class:`Progress`: each new ``(progress, stage)`` is one write to the
row and one ``document.status`` event (:func:`tasks.tracking.report_progress`, also the cancellation
checkpoint), with the :class:`StageClock`'s seconds so far. :func:`document_status_event` builds that
event from the row (the Celery task's ``row_event``), and :func:`ingestion_error` is the error the
document API, the admin and ``manage.py ingest`` show. :func:`progress_listener` lets a caller in the
same thread watch the reports (``manage.py ingest`` prints them; tests act at a given stage).

Imported by serializers and the admin, so it stays free of the pipeline's heavy parts (the reader,
the embedders): those are in :mod:`documents.ingestion` and :mod:`documents.preparation`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from documents.models import Document
from tasks import events
from tasks.models import Task
from tasks.tracking import checkpoint, report_progress

CANCELLED_ERROR = {"type": "cancelled", "message": "Ingestion was cancelled."}
STAGES = ("extract", "ocr", "chunk", "embed", "store", "index")

ProgressListener = Callable[[int, str], None]
_listener: ContextVar[ProgressListener | None] = ContextVar("ingestion_progress_listener", default=None)

# The document lifecycle status a task row's status stands for (the event's ``status``).
_DOCUMENT_STATUS_OF_TASK = {
    Task.Status.PENDING: Document.Status.PENDING,
    Task.Status.PROCESSING: Document.Status.PROCESSING,
    Task.Status.COMPLETED: Document.Status.READY,
    Task.Status.FAILED: Document.Status.FAILED,
    Task.Status.CANCELLED: Document.Status.FAILED,
}


def ingestion_error(task: Task | None) -> dict[str, Any] | None:
    """The error of an ingestion as its task row records it (a cancelled row: ``cancelled``)."""
    if task is None:
        return None
    if task.error:
        return task.error
    return dict(CANCELLED_ERROR) if task.status == Task.Status.CANCELLED else None


def document_status_event(task: Task) -> events.DocumentStatusEvent | None:
    """The ``document.status`` event of an ingestion row (None for a run a newer one superseded)."""
    if task.status == Task.Status.COMPLETED and (task.result or {}).get("skipped") == "superseded":
        return None
    return events.document_status_event(
        document_id=(task.payload or {}).get("document_id"),
        task_id=task.pk,
        status=_DOCUMENT_STATUS_OF_TASK.get(task.status, task.status),
        progress=task.progress,
        stage=task.stage,
        error=ingestion_error(task),
        timings=task.timings,
    )


@dataclass
class StageClock:
    """Seconds per stage (``extract``, ``ocr``, ``chunk``, ``embed``, ``store``, ``index``).

    Stages overlap (the children read while this process chunks and embeds), so the seconds can add
    up to more than the run's wall-clock time; ``extract`` and ``ocr`` are the children's own.
    """

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.add(stage, time.monotonic() - started)

    def as_dict(self) -> dict[str, float]:
        return {stage: round(self.seconds.get(stage, 0.0), 4) for stage in STAGES}


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Call ``listener(progress, stage)`` on every new progress report made in this context (same thread)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class Progress:
    """Reports progress and the stage timings so far to the ledger row (one write and one event; a checkpoint)."""

    def __init__(self, row_id: str | None, clock: StageClock | None = None) -> None:
        self.row_id = row_id
        self.clock = clock or StageClock()
        self.listener = _listener.get()
        self.last: tuple[int, str] = (-1, "")

    def __call__(self, progress: int, stage: str) -> None:
        if (progress, stage) == self.last:
            return
        self.last = (progress, stage)
        report_progress(self.row_id, progress=progress, stage=stage, timings=self.clock.as_dict())  # a checkpoint
        if self.listener is not None:
            self.listener(progress, stage)

    def checkpoint(self) -> None:
        """Raise :class:`tasks.tracking.TaskCancelled` when the run must stop (one cheap read of the row)."""
        checkpoint(self.row_id)
