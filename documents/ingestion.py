"""The ingestion pipeline: PDF → pages → chunks → embeddings → chunks stored in one transaction.

:func:`document_ingest` is what the Celery task (``documents.tasks.ingest_document``) runs, for
uploads, reprocessing, the ledger's retry and ``manage.py ingest`` alike. Stages and their share of
the progress bar::

    extracting 5–40 · chunking 42 · embedding 45–90 · storing 95 · done 100

Who owns what: the task row (``tasks.Task``) is the one record of the run — progress, stage, error
and per-stage timings (seconds). Every progress report is one write to that row and one
``document.status`` event (:func:`tasks.tracking.report_progress`, also the cancellation checkpoint;
the event is :func:`document_status_event`, built from the row). ``Document.status`` is the
lifecycle search and the API need, written only at its transitions: ``processing`` when a run
starts, ``ready`` with the chunks, ``failed`` when a run fails here or its row ends outside the worker,
``pending`` on upload, reprocess and the ledger's retry (those last ones in :mod:`documents.services`).

Failures raise :class:`IngestionFailed` with a typed code (``pdf_no_text``, ``pdf_invalid``,
``ingestion_crashed``, ``ingestion_timeout``, ``internal_error``; ``embedding_failed`` comes as the
embedder's own error); the task's base class stores it on the row. The store step locks the document
row, deletes its chunks and COPYs the new ones in one transaction: a redelivered or retried task never
duplicates chunks, and a document deleted meanwhile is left alone.

Extending it: a new stage is a :class:`_Progress` report with its name (its seconds land in the
row's ``timings``); :func:`progress_listener` lets a caller in the same thread watch the reports.
The chunks and vectors are written by :mod:`documents.chunkstore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from documents.chunking import ChunkData, chunk_pages
from documents.chunkstore import active_embedder_locked, chunks_replace
from documents.embeddings import Embedder, EmbeddingError, get_embedder, tenant_embedder_name
from documents.extraction import PageText, PdfError, PdfExtractor, get_extractor
from documents.models import Document
from integrations.webhooks import announce_document
from tasks import events
from tasks.ledger import error_type_of
from tasks.models import Task
from tasks.tracking import TaskCancelled, report_progress
from tenants.usage import usage_record

logger = logging.getLogger(__name__)

NO_TEXT_MESSAGE = "No text could be extracted: the PDF looks scanned (pages are images). OCR is not supported yet."
CANCELLED_ERROR = {"type": "cancelled", "message": "Ingestion was cancelled."}

ProgressListener = Callable[[int, str], None]
_listener: ContextVar[ProgressListener | None] = ContextVar("ingestion_progress_listener", default=None)


class IngestionFailed(Exception):
    """A document that cannot be ingested, with the error type recorded on its task row."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # Celery pickles/unpickles task exceptions
        return (type(self), (self.code, self.message))


@dataclass
class IngestResult:
    document_id: str
    pages: int
    pages_without_text: int
    chunks: int
    embedding_tokens: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "pages": self.pages,
            "pages_without_text": self.pages_without_text,
            "chunks": self.chunks,
            "embedding_tokens": self.embedding_tokens,
            "seconds": round(self.seconds, 3),
            "timings": self.timings,
        }


# --- what the task row says about its document --------------------------------------------------

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


def _announce(document: Document, error: dict[str, Any] | None = None) -> None:
    """``document.ready`` / ``document.failed`` webhooks (queued with the transition, sent after commit)."""
    announce_document(document, error=error)


def _error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, TaskCancelled):
        return dict(CANCELLED_ERROR)
    return {"type": error_type_of(exc), "message": str(getattr(exc, "message", "") or exc) or type(exc).__name__}


def _set_status(document: Document, status: str, **fields: Any) -> bool:
    """A lifecycle transition of the document (the only writes of its status); False when it is gone."""
    document.status = status
    for key, value in fields.items():
        setattr(document, key, value)
    return bool(Document.objects.filter(pk=document.pk).update(status=status, updated_at=timezone.now(), **fields))


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[None]:
    """Call ``listener(progress, stage)`` on every new progress report made in this context (same thread)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


class _Progress:
    """Reports progress and stage timings to the ledger row (one write and one event; a checkpoint)."""

    def __init__(self, row_id: str | None) -> None:
        self.row_id = row_id
        self.listener = _listener.get()
        self.last: tuple[int, str] = (-1, "")
        self.timings: dict[str, float] = {}
        self._stage_started = time.monotonic()

    def _close_stage(self) -> None:
        stage, now = self.last[1], time.monotonic()
        if stage:
            self.timings[stage] = round(self.timings.get(stage, 0.0) + now - self._stage_started, 4)
        self._stage_started = now

    def __call__(self, progress: int, stage: str) -> None:
        if (progress, stage) == self.last:
            return
        if stage != self.last[1]:
            self._close_stage()
        self.last = (progress, stage)
        report_progress(self.row_id, progress=progress, stage=stage, timings=self.timings)  # raises TaskCancelled
        if self.listener is not None:
            self.listener(progress, stage)

    def finish(self) -> dict[str, float]:
        """The timings with the last stage closed."""
        self._close_stage()
        return self.timings


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


def _skip_reason(document: Document | None, task_row_id: str | None) -> dict[str, Any] | None:
    """Why a run has nothing to do: the document is gone, another task owns it, or it is ready."""
    if document is None:
        return {"skipped": "document_deleted"}
    if task_row_id and document.task_id and str(document.task_id) != str(task_row_id):
        return {"skipped": "superseded"}
    if document.status == Document.Status.READY:
        return {"skipped": "already_ready", "chunks": document.chunk_count}
    return None


def document_ingest(
    *,
    document_id: str,
    task_row_id: str | None = None,
    extractor: PdfExtractor | None = None,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Ingest one document (see the module docstring). Returns a summary for the ledger row.

    Quietly returns when the document is gone, already ready, or was handed to a newer task (a
    reprocess superseded this one). Any failure moves the document to ``failed`` and raises a
    typed error (:class:`IngestionFailed`, :class:`EmbeddingError`) or :class:`TaskCancelled`.
    """
    document = Document.objects.select_related("tenant", "owner").filter(pk=document_id).first()
    skipped = _skip_reason(document, task_row_id)
    if skipped is not None:
        return skipped
    assert document is not None
    try:
        return _run(document, task_row_id, extractor, embedder)
    except (TaskCancelled, IngestionFailed, EmbeddingError) as exc:
        _fail(document, _error_of(exc))
        raise
    except PdfError as exc:
        failure = IngestionFailed(exc.code, exc.message)
        _fail(document, _error_of(failure))
        raise failure from exc
    except SoftTimeLimitExceeded as exc:
        failure = IngestionFailed("ingestion_timeout", "Ingestion took longer than the time limit.")
        _fail(document, _error_of(failure))
        raise failure from exc
    except Exception as exc:
        logger.exception("document_ingest_crashed", extra={"document_id": str(document.pk)})
        failure = IngestionFailed("internal_error", f"Ingestion failed unexpectedly ({type(exc).__name__}).")
        _fail(document, _error_of(failure))
        raise failure from exc


def _run(
    document: Document, task_row_id: str | None, extractor: PdfExtractor | None, embedder: Embedder | None
) -> dict[str, Any]:
    """The stages of :func:`document_ingest`; raises on any failure."""
    started = time.monotonic()
    if _attempts(task_row_id) > settings.INGESTION_MAX_ATTEMPTS:
        raise IngestionFailed(
            "ingestion_crashed",
            f"Ingestion was interrupted {settings.INGESTION_MAX_ATTEMPTS} times (the worker died): giving up.",
        )
    if document.status != Document.Status.PROCESSING:
        _set_status(document, Document.Status.PROCESSING)
    progress = _Progress(task_row_id)
    extractor = extractor or get_extractor()
    chosen_embedder = embedder is None  # the tenant's: follow a switch that happens meanwhile
    embedder = embedder or get_embedder(tenant_embedder_name(document.tenant))
    path = _source(document)

    progress(2, "opening")
    pages = extract_pages(extractor, path, progress, extractor.page_count(path))
    chunks: list[ChunkData] = []
    if any(page.text for page in pages):
        progress(42, "chunking")
        chunks = chunk_pages(pages, chunk_tokens=settings.CHUNK_TOKENS, overlap=settings.CHUNK_OVERLAP)
    if not chunks:
        Document.objects.filter(pk=document.pk).update(page_count=len(pages))
        raise IngestionFailed("pdf_no_text", NO_TEXT_MESSAGE)

    progress(45, "embedding")
    vectors, tokens = embed_chunks(embedder, chunks, progress)
    if embedder.metered:
        usage_record(
            tenant=document.tenant, user=document.owner, kind="embedding", model=embedder.model, embedding_tokens=tokens
        )

    progress(95, "storing")
    count = _store(
        document, task_row_id, chunks, vectors, embedder, page_count=len(pages), follow_switch=chosen_embedder
    )
    if count is None:
        return {"skipped": "superseded"}
    pages_without_text = sum(1 for page in pages if not page.text)
    result = IngestResult(
        str(document.pk), len(pages), pages_without_text, count, tokens, time.monotonic() - started, progress.finish()
    )
    logger.info("document_ingested", extra=result.as_dict())
    return result.as_dict()


def _store(
    document: Document,
    task_row_id: str | None,
    chunks: Sequence[ChunkData],
    vectors: Sequence[Sequence[float]],
    embedder: Embedder,
    *,
    page_count: int,
    follow_switch: bool = True,
) -> int | None:
    """Replace the chunks and make the document ``ready`` in one transaction; None when superseded.

    With ``follow_switch``, vectors of an embedder the tenant has switched away from meanwhile are
    made again with the active one (see :mod:`documents.reembedding`)."""
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(pk=document.pk).first()
        if locked is None:
            raise TaskCancelled(task_row_id or str(document.pk))
        if task_row_id and locked.task_id and str(locked.task_id) != str(task_row_id):
            return None
        active = active_embedder_locked(document.tenant_id)
        if follow_switch and active != embedder.provider:
            # The tenant switched embedders while this document was embedded: its searches now read
            # the new embedder's vectors only, so store those (the switch waits for this transaction).
            embedder = get_embedder(active)
            again = embedder.embed([chunk.text for chunk in chunks])
            vectors = again.vectors
            if embedder.metered:
                usage_record(
                    tenant=document.tenant,
                    user=document.owner,
                    kind="embedding",
                    model=embedder.model,
                    embedding_tokens=again.tokens,
                )
        count = chunks_replace(document=document, chunks=chunks, vectors=vectors, embedder=embedder)
        _set_status(
            document,
            Document.Status.READY,
            chunk_count=count,
            page_count=page_count,
            embedding_model=embedder.model,
            embedding_dimensions=embedder.dimensions,
            processed_at=timezone.now(),
        )
        _announce(document)
    return count


def _fail(document: Document, error: dict[str, Any] | None = None) -> None:
    """processing → failed (the error itself is recorded on the task row by its base class)."""
    try:
        if _set_status(document, Document.Status.FAILED):
            _announce(document, error)
    except Exception:
        logger.exception("document_fail_bookkeeping_failed", extra={"document_id": str(document.pk)})
