"""Channel group names and event payloads: the one place workers and consumers agree on them.

Groups are per user (``user.<id>``); the chat socket of a user joins their group and forwards the
events below. Senders use :func:`publish`, which never raises: a missing event must not fail the work.

Both events are built from a ledger row (:mod:`tasks.tracking` publishes one per change of a row):
``document.status`` for document ingestion (its status is the document's lifecycle status; stage,
progress, error and timings are the task row's), ``task.progress`` for every other background task
and for to-dos.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def user_group(user_id: object) -> str:
    """The channel group of one user's sockets."""
    return f"user.{user_id}"


class TaskProgressEvent(TypedDict):
    type: Literal["task.progress"]
    task_id: str
    kind: str
    status: str
    progress: int
    stage: str


class DocumentStatusEvent(TypedDict):
    type: Literal["document.status"]
    document_id: str
    task_id: str | None
    status: str
    progress: int
    stage: str
    error: dict[str, Any] | None
    timings: dict[str, float]


def task_progress_event(*, task_id: object, kind: str, status: str, progress: int, stage: str) -> TaskProgressEvent:
    return {
        "type": "task.progress",
        "task_id": str(task_id),
        "kind": kind,
        "status": status,
        "progress": progress,
        "stage": stage,
    }


def document_status_event(
    *,
    document_id: object,
    task_id: object | None,
    status: str,
    progress: int,
    stage: str,
    error: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
) -> DocumentStatusEvent:
    return {
        "type": "document.status",
        "document_id": str(document_id),
        "task_id": str(task_id) if task_id else None,
        "status": status,
        "progress": progress,
        "stage": stage,
        "error": error,
        "timings": dict(timings or {}),
    }


TaskEvent = TaskProgressEvent | DocumentStatusEvent


def publish(user_id: object, event: TaskEvent) -> None:
    """Send ``event`` to the user's group from synchronous code (workers, services)."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(user_group(user_id), dict(event))
    except Exception:
        logger.exception("event_publish_failed", extra={"event_type": event.get("type")})


async def apublish(user_id: object, event: TaskEvent) -> None:
    """Async twin of :func:`publish`."""
    try:
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(user_group(user_id), dict(event))
    except Exception:
        logger.exception("event_publish_failed", extra={"event_type": event.get("type")})
