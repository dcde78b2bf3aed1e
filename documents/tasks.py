"""Celery tasks of the documents app: thin interfaces over :mod:`documents.ingestion` and
:mod:`documents.reembedding`."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from documents.ingestion import document_ingest
from documents.ingestion_progress import document_status_event
from documents.services import document_ingestion_abandoned, document_ingestion_requeued
from tasks import events
from tasks.models import Task
from tasks.tracking import TrackedTask


class IngestionTask(TrackedTask):
    """A tracked task whose row's changes are ``document.status`` events of its document."""

    def row_event(self, task: Task) -> events.DocumentStatusEvent | None:
        """``document.status`` built from the row (see :func:`documents.ingestion_progress.document_status_event`)."""
        return document_status_event(task)

    def on_requeued(self, task: Task) -> None:
        """The ledger's retry queued a new attempt: the document waits again (failed → pending)."""
        document_ingestion_requeued(task=task)

    def on_abandoned(self, task: Task) -> None:
        """The row ended outside the worker: fail its still unfinished document."""
        document_ingestion_abandoned(task=task)


@shared_task(
    base=IngestionTask,
    bind=True,
    name="documents.ingest",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def ingest_document(self: Any, document_id: str, *, task_row_id: str | None = None) -> dict[str, Any]:
    """Ingest document ``document_id`` for ledger row ``task_row_id``.

    Late acks with reject-on-worker-lost: a worker killed mid-run gives the message back and the
    next run replaces whatever the first one left. No Celery-level retries: the embedding client
    retries each request itself (see :mod:`documents.embeddings`), and a failed document is run
    again by ``POST /documents/{id}/reprocess/`` or ``POST /tasks/{id}/retry/``. Returns quietly
    (and the row completes) when the document is gone.
    """
    return document_ingest(document_id=document_id, task_row_id=task_row_id)


@shared_task(
    base=TrackedTask,
    bind=True,
    name="documents.reembed",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def reembed_tenant(self: Any, tenant_id: str, embedder: str, *, task_row_id: str | None = None) -> dict[str, Any]:
    """Re-embed tenant ``tenant_id``'s chunks with ``embedder`` and switch it (ledger row ``task_row_id``).

    A redelivered or retried run only embeds what is still missing (see :mod:`documents.reembedding`).
    """
    from documents.reembedding import tenant_reembed

    return tenant_reembed(tenant_id=tenant_id, embedder=embedder, task_row_id=task_row_id)
