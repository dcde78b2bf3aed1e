"""The ingestion pipeline: PDF → pages → chunks → embeddings → chunks stored in one transaction.

:func:`document_ingest` is what the Celery task (``documents.tasks.ingest_document``) and the
``ingest`` management command run. Stages and their share of the progress bar::

    extracting 5–40 · chunking 42 · embedding 45–90 · storing 95 · done 100

Every progress report goes to the ledger row (:func:`tasks.tracking.report_progress`, which is also
the cancellation checkpoint) and to the document (fields + a ``document.status`` event to the owner).
Failures end with the document ``failed`` and a typed error (``pdf_no_text``, ``pdf_invalid``,
``embedding_failed``, ``cancelled``, ``ingestion_crashed``, ``internal_error``), then re-raise so the
ledger row fails too. The store step locks the document row, deletes its chunks and COPYs the new
ones in one transaction: a redelivered or retried task never duplicates chunks, and a document
deleted meanwhile is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from documents.chunking import ChunkData, chunk_pages
from documents.embeddings import Embedder, EmbeddingError, get_embedder, pad
from documents.extraction import PageText, PdfError, PdfExtractor, get_extractor
from documents.models import VECTOR_DIMENSIONS, Chunk, Document
from tasks import events
from tasks.models import Task
from tasks.tracking import TaskCancelled, report_progress
from tenants.usage import usage_record

logger = logging.getLogger(__name__)

NO_TEXT_MESSAGE = "No text could be extracted: the PDF looks scanned (pages are images). OCR is not supported yet."


ProgressListener = Callable[[int, str], None]


class IngestionFailed(Exception):
    """A document that cannot be ingested, with the error type recorded on it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class IngestResult:
    document_id: str
    pages: int
    pages_without_text: int
    chunks: int
    embedding_tokens: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "pages": self.pages,
            "pages_without_text": self.pages_without_text,
            "chunks": self.chunks,
            "embedding_tokens": self.embedding_tokens,
            "seconds": round(self.seconds, 3),
        }


# --- status bookkeeping -------------------------------------------------------------------------


def _status_event(document: Document) -> events.DocumentStatusEvent:
    return events.document_status_event(
        document_id=document.pk,
        task_id=document.task_id,
        status=document.status,
        progress=document.progress,
        stage=document.stage,
        error=document.error,
    )


def publish_document_status(document: Document) -> None:
    """Send the document's status to its owner's sockets (never raises)."""
    events.publish(document.owner_id, _status_event(document))


def _update_document(document: Document, *, publish_on_commit: bool = False, **fields: Any) -> bool:
    """Write ``fields`` to the row (if it still exists) and to ``document``; publish the new status
    (once the transaction commits with ``publish_on_commit``)."""
    for key, value in fields.items():
        setattr(document, key, value)
    updated = Document.objects.filter(pk=document.pk).update(**fields, updated_at=timezone.now())
    if updated and publish_on_commit:
        event = _status_event(document)
        owner_id = document.owner_id
        transaction.on_commit(lambda: events.publish(owner_id, event))
    elif updated:
        publish_document_status(document)
    return bool(updated)


class _Progress:
    """Reports progress to the ledger row (a cancel checkpoint) and to the document."""

    def __init__(self, document: Document, row_id: str | None, listener: ProgressListener | None = None) -> None:
        self.document = document
        self.row_id = row_id
        self.listener = listener
        self.last: tuple[int, str] = (-1, "")

    def __call__(self, progress: int, stage: str) -> None:
        report_progress(self.row_id, progress=progress, stage=stage)  # raises TaskCancelled
        if (progress, stage) == self.last:
            return
        self.last = (progress, stage)
        if self.listener is not None:
            self.listener(progress, stage)
        if not _update_document(self.document, progress=progress, stage=stage):
            raise TaskCancelled(self.row_id or str(self.document.pk))  # the document was deleted


# --- the pipeline -------------------------------------------------------------------------------


def extract_pages(extractor: PdfExtractor, path: str | bytes, progress: _Progress, page_count: int) -> list[PageText]:
    """Every page's text, reporting progress between 5 and 40."""
    pages: list[PageText] = []
    every = max(1, page_count // 20)
    for page in extractor.pages(path):
        pages.append(page)
        if len(pages) % every == 0:
            progress(5 + int(35 * len(pages) / max(page_count, 1)), "extracting")
    return pages


def embed_chunks(embedder: Embedder, chunks: Sequence[ChunkData], progress: _Progress) -> tuple[list[list[float]], int]:
    """Vectors for the chunks, reporting progress between 45 and 90 after each batch."""

    def on_batch(done: int, total: int) -> None:
        progress(45 + int(45 * done / max(total, 1)), "embedding")

    result = embedder.embed([chunk.text for chunk in chunks], on_batch=on_batch)
    return result.vectors, result.tokens


def _vector_literal(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{value:.5g}" for value in pad(vector, VECTOR_DIMENSIONS)) + "]"


def chunks_replace(
    *, document: Document, chunks: Sequence[ChunkData], vectors: Sequence[Sequence[float]], embedder: Embedder
) -> int:
    """Replace the document's chunks (delete + COPY) inside the caller's transaction."""
    Chunk.objects.filter(document_id=document.pk).delete()
    columns = (
        "tenant_id, document_id, index, text, page_start, page_end, token_count, char_start, char_end, "
        "embedding, embedding_model, embedding_dimensions"
    )
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {Chunk._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        for chunk, vector in zip(chunks, vectors, strict=True):
            copy.write_row(
                (
                    str(document.tenant_id),
                    str(document.pk),
                    chunk.index,
                    chunk.text,
                    chunk.page_start,
                    chunk.page_end,
                    chunk.token_count,
                    chunk.char_start,
                    chunk.char_end,
                    _vector_literal(vector),
                    embedder.model,
                    embedder.dimensions,
                )
            )
    return len(chunks)


def _source(document: Document) -> str | bytes:
    """The PDF as a local path (file system storage) or its bytes (any other storage)."""
    try:
        return document.file.path
    except NotImplementedError:
        with document.file.open("rb") as handle:
            return handle.read()


def _attempts(row_id: str | None) -> int:
    if not row_id:
        return 0
    return Task.objects.filter(pk=row_id).values_list("attempts", flat=True).first() or 0


def document_ingest(
    *,
    document_id: str,
    task_row_id: str | None = None,
    extractor: PdfExtractor | None = None,
    embedder: Embedder | None = None,
    on_progress: ProgressListener | None = None,
) -> dict[str, Any]:
    """Ingest one document (see the module docstring). Returns a summary for the ledger row.

    ``on_progress(progress, stage)`` is called on every new progress report (the ``ingest`` command's bar).

    Quietly returns when the document is gone, already ready for this task, or was handed to a newer
    task (a reprocess superseded this one).
    """
    started = time.monotonic()
    document = Document.objects.select_related("tenant", "owner").filter(pk=document_id).first()
    if document is None:
        return {"skipped": "document_deleted"}
    if task_row_id and document.task_id and str(document.task_id) != str(task_row_id):
        return {"skipped": "superseded"}
    if document.status == Document.Status.READY:
        return {"skipped": "already_ready", "chunks": document.chunk_count}

    progress = _Progress(document, task_row_id, on_progress)
    try:
        if _attempts(task_row_id) > settings.INGESTION_MAX_ATTEMPTS:
            raise IngestionFailed(
                "ingestion_crashed",
                f"Ingestion was interrupted {settings.INGESTION_MAX_ATTEMPTS} times (the worker died): giving up.",
            )
        _update_document(document, status=Document.Status.PROCESSING, progress=1, stage="starting", error=None)
        extractor = extractor or get_extractor()
        embedder = embedder or get_embedder()
        path = _source(document)

        progress(2, "opening")
        page_count = extractor.page_count(path)
        pages = extract_pages(extractor, path, progress, page_count)
        pages_without_text = sum(1 for page in pages if not page.text)
        _update_document(document, page_count=len(pages))
        if not any(page.text for page in pages):
            raise IngestionFailed("pdf_no_text", NO_TEXT_MESSAGE)

        progress(42, "chunking")
        chunks = chunk_pages(pages, chunk_tokens=settings.CHUNK_TOKENS, overlap=settings.CHUNK_OVERLAP)
        if not chunks:
            raise IngestionFailed("pdf_no_text", NO_TEXT_MESSAGE)

        progress(45, "embedding")
        vectors, tokens = embed_chunks(embedder, chunks, progress)
        if embedder.metered:
            usage_record(
                tenant=document.tenant,
                user=document.owner,
                kind="embedding",
                model=embedder.model,
                embedding_tokens=tokens,
            )

        progress(95, "storing")
        with transaction.atomic():
            locked = Document.objects.select_for_update().filter(pk=document.pk).first()
            if locked is None:
                raise TaskCancelled(task_row_id or str(document.pk))
            if task_row_id and locked.task_id and str(locked.task_id) != str(task_row_id):
                return {"skipped": "superseded"}
            count = chunks_replace(document=document, chunks=chunks, vectors=vectors, embedder=embedder)
            # Announced after the commit: a client reacting to "ready" must find the chunks there.
            _update_document(
                document,
                publish_on_commit=True,
                status=Document.Status.READY,
                progress=100,
                stage="done",
                chunk_count=count,
                page_count=len(pages),
                error=None,
                embedding_model=embedder.model,
                embedding_dimensions=embedder.dimensions,
                processed_at=timezone.now(),
            )
        result = IngestResult(
            str(document.pk), len(pages), pages_without_text, count, tokens, time.monotonic() - started
        )
        logger.info("document_ingested", extra=result.as_dict())
        return result.as_dict()
    except TaskCancelled:
        _fail(document, "cancelled", "Ingestion was cancelled.")
        raise
    except IngestionFailed as exc:
        _fail(document, exc.code, exc.message)
        raise
    except PdfError as exc:
        _fail(document, exc.code, exc.message)
        raise IngestionFailed(exc.code, exc.message) from exc
    except EmbeddingError as exc:
        _fail(document, exc.code, exc.message)
        raise
    except SoftTimeLimitExceeded:
        _fail(document, "ingestion_timeout", "Ingestion took longer than the time limit.")
        raise
    except Exception as exc:
        logger.exception("document_ingest_crashed", extra={"document_id": str(document.pk)})
        _fail(document, "internal_error", f"Ingestion failed unexpectedly ({type(exc).__name__}).")
        raise


def _fail(document: Document, code: str, message: str) -> None:
    try:
        _update_document(
            document, status=Document.Status.FAILED, stage="failed", error={"type": code, "message": message}
        )
    except Exception:
        logger.exception("document_fail_bookkeeping_failed", extra={"document_id": str(document.pk)})


def document_ingestion_abandoned(task: Task) -> None:
    """Put the document in step when its ingestion row ended outside the worker.

    A task cancelled before any worker picked it up, or failed by the watchdog as stalled, would
    otherwise leave its document ``pending`` or ``processing`` forever. Only the document whose
    current task is ``task`` and that is still unfinished is touched.
    """
    document = Document.objects.filter(
        task_id=task.pk, status__in=[Document.Status.PENDING, Document.Status.PROCESSING]
    ).first()
    if document is None:
        return
    error = (
        task.error
        if task.status == Task.Status.FAILED and task.error
        else {"type": "cancelled", "message": "Ingestion was cancelled."}
    )
    _update_document(document, status=Document.Status.FAILED, stage="failed", error=error)
