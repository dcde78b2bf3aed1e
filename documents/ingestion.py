"""The ingestion pipeline: PDF → pages → chunks → embeddings → chunks stored in one transaction.

:func:`document_ingest` is what the Celery task (``documents.tasks.ingest_document``) runs, for
uploads, reprocessing, the ledger's retry and ``manage.py ingest`` alike. Pages are read in
sandboxed child processes (text layer, then OCR for scanned pages: :mod:`documents.reader`) and stream
back as they are done; every ``SEGMENT_CHARS`` of text is chunked and embedded while the children go
on reading (:func:`documents.preparation.read_chunk_embed`). Progress::

    opening 2 · extracting / ocr / chunking / embedding 5–90 (by pages read) · storing 95 · done 100

Each stage's seconds (``extract``, ``ocr``, ``chunk``, ``embed``, ``store``, ``index``; see
:class:`documents.ingestion_progress.StageClock`) are the row's ``timings`` and are in the
``document_ingested`` log line with the children's peak RSS. Chunks carry their ``source`` (``text`` or
``ocr``) and the document the OCR confidence of each scanned page.

Who owns what: the task row (``tasks.Task``) is the one record of the run — progress, stage, error and
per-stage timings (seconds). Every progress report is one write to that row and one ``document.status``
event (:class:`documents.ingestion_progress.Progress` over :func:`tasks.tracking.report_progress`, also
the cancellation checkpoint; the event is :func:`documents.ingestion_progress.document_status_event`,
built from the row). ``Document.status`` is the lifecycle search and the API need, written only at its
transitions: ``processing`` when a run starts, ``ready`` with the chunks, ``failed`` when a run fails
here or its row ends outside the worker, ``pending`` on upload, reprocess and the ledger's retry (those
last ones in :mod:`documents.services`).

Failures raise :class:`IngestionFailed` with a typed code (``pdf_no_text``, ``pdf_invalid``,
``pdf_too_complex``, ``pdf_too_many_scanned_pages``, ``ocr_unavailable``, ``ingestion_crashed``,
``ingestion_timeout``, ``internal_error``; ``embedding_failed`` comes as the embedder's own error); the
task's base class stores it on the row. The store step locks the document row, deletes its chunks and
COPYs the new ones in one transaction: a redelivered or retried task never duplicates chunks, and a
document deleted meanwhile is left alone.

Extending it: a new stage is a :class:`~documents.ingestion_progress.Progress` report with its name,
and its seconds a :meth:`~documents.ingestion_progress.StageClock.measure`;
:func:`~documents.ingestion_progress.progress_listener` lets a caller in the same thread watch the
reports. The chunks and vectors are written by :mod:`documents.chunkstore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from documents.chunkstore import active_embedder_locked, chunks_replace
from documents.embedding_base import Embedder, EmbeddingError
from documents.embeddings import get_embedder, tenant_embedder_name
from documents.extraction import PageText, PdfError, PdfExtractor
from documents.ingestion_progress import CANCELLED_ERROR, Progress, StageClock
from documents.models import Document
from documents.preparation import Prepared, page_sources, read_chunk_embed
from documents.reader import ReaderConfig
from health.metrics import record_ingest
from integrations.webhooks import announce_document
from tasks.ledger import error_type_of
from tasks.models import Task
from tasks.tracking import TaskCancelled
from tenants.usage import usage_record

logger = logging.getLogger(__name__)

NO_TEXT_MESSAGE = "No text could be extracted: the pages look scanned (no text layer) and OCR found no text in them."
NO_TEXT_OCR_OFF = "No text could be extracted: the PDF looks scanned (pages are images) and OCR is turned off."
NO_TEXT_NO_IMAGES = "No text could be extracted: the PDF's pages hold neither text nor images."


def no_text_message(pages: Sequence[PageText], config: ReaderConfig) -> str:
    """Why a document has no text: OCR found none, OCR is off, or there was nothing to read."""
    if any(page.source == "ocr" for page in pages):
        return NO_TEXT_MESSAGE
    return NO_TEXT_OCR_OFF if not config.ocr_enabled else NO_TEXT_NO_IMAGES


def _json_pages(ocr_pages: dict[int, float | None]) -> dict[str, float | None]:
    return {str(number): confidence for number, confidence in ocr_pages.items()}


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
    ocr_pages: int = 0
    peak_rss_kb: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "pages": self.pages,
            "pages_without_text": self.pages_without_text,
            "ocr_pages": self.ocr_pages,
            "chunks": self.chunks,
            "embedding_tokens": self.embedding_tokens,
            "seconds": round(self.seconds, 3),
            "timings": self.timings,
            "peak_rss_kb": self.peak_rss_kb,
        }


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
    _give_up_after_crashes(task_row_id)
    if document.status != Document.Status.PROCESSING:
        _set_status(document, Document.Status.PROCESSING)
    clock = StageClock()
    progress = Progress(task_row_id, clock)
    chosen_embedder = embedder is None  # the tenant's: follow a switch that happens meanwhile
    embedder = embedder or get_embedder(tenant_embedder_name(document.tenant))
    config = ReaderConfig.from_settings(**({"extractor": extractor.name} if extractor is not None else {}))

    progress(2, "opening")
    prepared = read_chunk_embed(
        _source(document),
        embedder=embedder,
        progress=progress,
        checkpoint=progress.checkpoint,
        clock=clock,
        config=config,
    )
    ocr_pages = page_sources(prepared.pages)
    if not prepared.chunks:
        Document.objects.filter(pk=document.pk).update(page_count=len(prepared.pages), ocr_pages=_json_pages(ocr_pages))
        raise IngestionFailed("pdf_no_text", no_text_message(prepared.pages, config))
    _meter(document, embedder, prepared.tokens)

    progress(95, "storing")
    count = _store(
        document,
        task_row_id,
        prepared,
        embedder,
        ocr_pages=ocr_pages,
        clock=clock,
        follow_switch=chosen_embedder,
    )
    if count is None:
        return {"skipped": "superseded"}
    result = IngestResult(
        str(document.pk),
        len(prepared.pages),
        sum(1 for page in prepared.pages if not page.text),
        count,
        prepared.tokens,
        time.monotonic() - started,
        clock.as_dict(),
        ocr_pages=len(ocr_pages),
        peak_rss_kb={"extract": prepared.reader.extract_peak_rss_kb, "ocr": prepared.reader.ocr_peak_rss_kb},
    )
    logger.info("document_ingested", extra=result.as_dict())
    record_ingest(timings=result.timings, pages=result.pages)
    return result.as_dict()


def _give_up_after_crashes(task_row_id: str | None) -> None:
    """``ingestion_crashed`` once the row has been delivered more than ``INGESTION_MAX_ATTEMPTS`` times."""
    if _attempts(task_row_id) > settings.INGESTION_MAX_ATTEMPTS:
        raise IngestionFailed(
            "ingestion_crashed",
            f"Ingestion was interrupted {settings.INGESTION_MAX_ATTEMPTS} times (the worker died): giving up.",
        )


def _meter(document: Document, embedder: Embedder, tokens: int) -> None:
    """The embedding tokens to the usage ledger, when the embedder bills by the token."""
    if embedder.metered:
        usage_record(
            tenant=document.tenant, user=document.owner, kind="embedding", model=embedder.model, embedding_tokens=tokens
        )


def _store(
    document: Document,
    task_row_id: str | None,
    prepared: Prepared,
    embedder: Embedder,
    *,
    ocr_pages: dict[int, float | None],
    clock: StageClock,
    follow_switch: bool = True,
) -> int | None:
    """Replace the chunks and make the document ``ready`` in one transaction; None when superseded.

    With ``follow_switch``, vectors of an embedder the tenant has switched away from meanwhile are
    made again with the active one (see :mod:`documents.reembedding`)."""
    chunks, vectors = prepared.chunks, prepared.vectors
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
            with clock.measure("embed"):
                again = embedder.embed([chunk.text for chunk in chunks])
            vectors = again.vectors
            _meter(document, embedder, again.tokens)
        count = chunks_replace(
            document=document,
            chunks=chunks,
            vectors=vectors,
            embedder=embedder,
            ocr_pages=ocr_pages,
            on_stage=clock.add,
        )
        _set_status(
            document,
            Document.Status.READY,
            chunk_count=count,
            page_count=len(prepared.pages),
            ocr_pages=_json_pages(ocr_pages),
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
