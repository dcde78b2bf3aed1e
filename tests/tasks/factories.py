"""Factories for the task ledger."""

from __future__ import annotations

from typing import Any

import factory

from accounts.models import User
from tasks.models import Task


class TaskFactory(factory.django.DjangoModelFactory):
    """A to-do by default; pass ``kind=Task.Kind.DOCUMENT_INGESTION`` (and a status) for background work."""

    class Meta:
        model = Task

    owner = None  # required
    tenant = factory.LazyAttribute(lambda o: o.owner.tenant)
    kind = Task.Kind.TODO
    title = factory.Sequence(lambda n: f"task {n}")
    status = Task.Status.PENDING


def background(owner: User, status: str = Task.Status.PROCESSING, **kwargs: Any) -> Task:
    return TaskFactory(
        owner=owner,
        kind=Task.Kind.DOCUMENT_INGESTION,
        celery_task_name="documents.ingest",
        status=status,
        celery_task_id="c-1",
        **kwargs,
    )
