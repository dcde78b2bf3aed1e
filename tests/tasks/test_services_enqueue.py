"""task_enqueue when the broker cannot be reached."""

from __future__ import annotations

from typing import Any

from tasks.models import Task
from tasks.services import task_create_background, task_enqueue


class UnreachableBroker:
    """Stands in for a Celery task whose broker refuses connections (kombu raises OperationalError)."""

    name = "tests.unreachable"

    def apply_async(self, **kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")


def test_a_message_that_cannot_be_sent_fails_the_row_instead_of_leaving_it_pending(
    user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    broker = UnreachableBroker()
    task = task_create_background(
        tenant=user.tenant,
        owner=user,
        kind=Task.Kind.DOCUMENT_INGESTION,
        title="x",
        celery_task=broker,  # type: ignore[arg-type]
    )
    with django_capture_on_commit_callbacks(execute=True):
        task_enqueue(task=task, celery_task=broker, kwargs={"document_id": "nope"})  # type: ignore[arg-type]
    task.refresh_from_db()
    assert task.status == Task.Status.FAILED
    assert task.error["type"] == "enqueue_failed"
    assert "retry" in task.error["message"]
