"""The ingestion pipeline, run in this process on real PDFs (the worker tests run it in Celery)."""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import pytest
import structlog
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from accounts.models import User
from config.logging import build_logging
from documents.ingestion import IngestionFailed, document_ingest
from documents.ingestion_progress import ingestion_error
from documents.models import Chunk, Document
from documents.services import document_delete
from tasks.events import user_group
from tasks.models import Task
from tasks.services import task_cancel
from tasks.tracking import TaskCancelled
from tests.documents.conftest import KNOWN_SENTENCE, ingest, ingest_outcome, known_pages
from tests.documents.pdfs import (
    PERSIAN_SECOND,
    PERSIAN_SENTENCE,
    encrypt_pdf,
    filler,
    make_image_pdf,
    make_pdf,
    make_persian_pdf,
)


def chunks_of(document: Document) -> list[Chunk]:
    return list(Chunk.objects.filter(document=document).order_by("index"))


@pytest.mark.parametrize("extractor", ["pypdf", "pypdfium2"])
def test_multi_page_document_becomes_ready_with_its_chunks(uploaded: Any, settings: Any, extractor: str) -> None:
    settings.PDF_EXTRACTOR = extractor
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 120, 20
    document = uploaded(make_pdf(known_pages()))

    result = ingest(document)

    document.refresh_from_db()
    chunks = chunks_of(document)
    assert document.status == Document.Status.READY
    task = Task.objects.get(pk=document.task_id)  # the one record of the run
    assert (task.status, task.progress, task.stage, task.error) == (Task.Status.COMPLETED, 100, "done", {})
    assert task.result == result and result["chunks"] >= 5
    assert set(task.timings) == {"extract", "ocr", "chunk", "embed", "store", "index"}  # issue 11's stages
    assert task.timings["extract"] > 0 and task.timings["embed"] > 0 and task.timings["ocr"] == 0
    assert all(isinstance(seconds, float) and seconds >= 0 for seconds in task.timings.values())
    assert document.page_count == 3
    assert document.chunk_count == len(chunks) == result["chunks"] >= 5
    assert (document.embedding_model, document.embedding_dimensions) == ("hashing-v1", 1536)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.tenant_id == document.tenant_id for c in chunks)
    assert all(0 < c.token_count <= 120 for c in chunks)
    assert all([(e.model, e.dimensions) for e in c.embeddings.all()] == [("hashing-v1", 1536)] for c in chunks)
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 3
    assert all(c.page_start <= c.page_end for c in chunks)
    # character offsets point into the document text, chunks overlap and cover it in order
    assert all(c.char_start < c.char_end for c in chunks)
    assert all(b.char_start < a.char_end for a, b in itertools.pairwise(chunks))
    holder = [c for c in chunks if KNOWN_SENTENCE in c.text]
    assert holder and {c.page_start for c in holder} == {2}


def test_the_document_ingested_log_line_carries_the_stage_timings(uploaded: Any, caplog: Any) -> None:
    """Issue 11: each ingestion records its stage timings on its task row *and in its log line* (the
    line rendered as production writes it: JSON through the project's formatter)."""
    caplog.set_level(logging.INFO, logger="documents.ingestion")
    document = uploaded(make_pdf(known_pages()))
    ingest(document)
    [record] = [r for r in caplog.records if r.name == "documents.ingestion" and r.getMessage() == "document_ingested"]
    structured = build_logging("json", "INFO")["formatters"]["structured"]
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=structured["processors"], foreign_pre_chain=structured["foreign_pre_chain"]
    )
    line = json.loads(formatter.format(record))
    task = Task.objects.get(pk=Document.objects.get(pk=document.pk).task_id)
    assert line["event"] == "document_ingested" and line["document_id"] == str(document.pk)
    assert set(line["timings"]) == {"extract", "ocr", "chunk", "embed", "store", "index"}
    assert all(isinstance(seconds, float) and seconds >= 0 for seconds in line["timings"].values())
    assert line["timings"]["extract"] > 0 and line["timings"] == task.timings


@pytest.mark.parametrize("extractor", ["pypdf", "pypdfium2"])
def test_an_encrypted_pdf_with_an_empty_password_ingests_to_ready(uploaded: Any, settings: Any, extractor: str) -> None:
    """README: owner-restricted PDFs (encrypted, empty user password) are read, not only accepted at upload."""
    settings.PDF_EXTRACTOR = extractor
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 120, 20
    document = uploaded(encrypt_pdf(make_pdf(known_pages()), user_password=""))

    ingest(document)

    document.refresh_from_db()
    assert document.status == Document.Status.READY, document.task.error if document.task_id else None
    assert document.page_count == 3
    chunks = chunks_of(document)
    holder = [c for c in chunks if KNOWN_SENTENCE in c.text]
    assert holder and {c.page_start for c in holder} == {2}


def test_persian_text_extracts_and_chunks(uploaded: Any, settings: Any) -> None:
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 40, 8
    document = uploaded(make_persian_pdf([PERSIAN_SENTENCE + " " + PERSIAN_SECOND, PERSIAN_SECOND]))

    ingest(document)

    document.refresh_from_db()
    assert document.status == Document.Status.READY, Task.objects.get(pk=document.task_id).error
    chunks = chunks_of(document)
    text = " ".join(" ".join(c.text.split()) for c in chunks)
    for word in ("کتابخانه", "دانشگاه", "تهران", "دانشجویان", "امانت"):
        assert word in text
    assert "\ufffd" not in text  # no character was cut in half at a token boundary
    first_page = " ".join(c.text for c in chunks if c.page_start == 1)
    assert "کتابخانه مرکزی دانشگاه تهران" in " ".join(first_page.split())
    assert {c.page_end for c in chunks} == {1, 2}


def test_image_only_pdf_fails_as_scanned(uploaded: Any) -> None:
    document = uploaded(make_image_pdf(pages=2))

    with pytest.raises(IngestionFailed) as failure:
        ingest(document)

    assert failure.value.code == "pdf_no_text"
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    task = Task.objects.get(pk=document.task_id)
    assert (task.status, task.error["type"]) == (Task.Status.FAILED, "pdf_no_text")
    assert "scanned" in task.error["message"]
    assert document.page_count == 2
    assert not Chunk.objects.filter(document=document).exists()


def test_pages_without_text_are_counted_and_skipped(uploaded: Any) -> None:
    from io import BytesIO

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in (make_pdf([filler(60)]), make_image_pdf(pages=1), make_pdf([KNOWN_SENTENCE])):
        for page in PdfReader(BytesIO(part)).pages:
            writer.add_page(page)
    out = BytesIO()
    writer.write(out)
    document = uploaded(out.getvalue())

    result = ingest(document)

    assert (result["pages"], result["pages_without_text"]) == (3, 1)
    chunks = chunks_of(document)
    assert {c.page_end for c in chunks} <= {1, 3}
    assert any(KNOWN_SENTENCE in c.text and c.page_end == 3 for c in chunks)


def test_running_twice_replaces_the_chunks(uploaded: Any) -> None:
    """A redelivered or retried task finds the earlier run's chunks and replaces them."""
    document = uploaded()
    ingest(document)
    first = [(c.index, c.text) for c in chunks_of(document)]
    # as if the worker died after storing, before the row completed: the message is redelivered
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING)
    Task.objects.filter(pk=document.task_id).update(status=Task.Status.PROCESSING)

    ingest(document)

    assert [(c.index, c.text) for c in chunks_of(document)] == first
    assert Document.objects.get(pk=document.pk).chunk_count == len(first)


def test_a_ready_document_is_not_ingested_again_by_a_stray_message(uploaded: Any) -> None:
    document = uploaded()
    ingest(document)
    ids = [c.pk for c in chunks_of(document)]
    # The completed row stops a stray message before the body runs ...
    assert ingest_outcome(document).state == "IGNORED"
    # ... and the pipeline itself leaves a ready document alone.
    fresh = Document.objects.get(pk=document.pk)
    assert document_ingest(document_id=str(fresh.pk), task_row_id=str(fresh.task_id)) == {
        "skipped": "already_ready",
        "chunks": len(ids),
    }
    assert [c.pk for c in chunks_of(document)] == ids


def test_a_run_cancelled_before_it_starts_never_runs_its_body(uploaded: Any) -> None:
    document = uploaded()
    task_cancel(task=Task.objects.get(pk=document.task_id))

    assert ingest_outcome(document).state == "IGNORED"

    assert not Chunk.objects.filter(document=document).exists()
    assert Task.objects.get(pk=document.task_id).status == Task.Status.CANCELLED


def test_cancelled_task_stops_at_the_first_checkpoint(uploaded: Any) -> None:
    """Cancelled while running: the next progress report stops the run; the document fails as cancelled."""
    document = uploaded()
    task = Task.objects.get(pk=document.task_id)
    Task.objects.filter(pk=task.pk).update(status=Task.Status.PROCESSING)  # a worker picked it up
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING)
    task_cancel(task=task)

    with pytest.raises(TaskCancelled):
        document_ingest(document_id=str(document.pk), task_row_id=str(task.pk))

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert ingestion_error(Task.objects.get(pk=task.pk))["type"] == "cancelled"
    assert not Chunk.objects.filter(document=document).exists()


def test_deleted_document_is_skipped(uploaded: Any) -> None:
    document = uploaded()
    task_id = document.task_id
    document_delete(document=document)
    assert document_ingest(document_id=str(document.pk), task_row_id=str(task_id)) == {"skipped": "document_deleted"}


def test_superseded_task_leaves_the_document_alone(uploaded: Any) -> None:
    document = uploaded()
    assert document_ingest(document_id=str(document.pk), task_row_id="999999999") == {"skipped": "superseded"}
    document.refresh_from_db()
    assert document.status == Document.Status.PENDING


def test_a_document_whose_worker_keeps_dying_is_given_up(uploaded: Any, settings: Any) -> None:
    settings.INGESTION_MAX_ATTEMPTS = 3
    document = uploaded()
    Task.objects.filter(pk=document.task_id).update(attempts=4)

    with pytest.raises(IngestionFailed):
        ingest(document)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert Task.objects.get(pk=document.task_id).error["type"] == "ingestion_crashed"


def _status_events(layer: Any, channel: str) -> list[dict[str, Any]]:
    """The ``document.status`` events waiting on ``channel``, up to a ``ready`` one or a quiet pause."""
    events: list[dict[str, Any]] = []
    while True:
        try:
            message = async_to_sync(_receive)(layer, channel)
        except TimeoutError:
            break
        if message["type"] == "document.status":
            events.append(message)
        if message.get("status") == "ready":
            break
    return events


@pytest.mark.django_db(transaction=True)
def test_progress_is_published_as_document_status_events(
    uploaded: Any, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    document = uploaded()

    with django_capture_on_commit_callbacks(execute=True):
        ingest(document)

    events = _status_events(layer, channel)
    assert events, "no document.status event"
    assert {e["document_id"] for e in events} == {str(document.pk)}
    assert events[-1]["status"] == "ready" and events[-1]["progress"] == 100
    stages = [e["stage"] for e in events]
    for stage in ("extracting", "chunking", "embedding", "storing", "done"):
        assert stage in stages, stages
    progresses = [e["progress"] for e in events]
    assert progresses == sorted(progresses)
    assert all(e["task_id"] == str(document.task_id) for e in events)


def test_ready_is_announced_only_once_the_chunks_are_committed(
    uploaded: Any, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    """A client that fetches the document or searches on ``ready`` must find it ready with its chunks."""
    import asyncio

    from asgiref.sync import sync_to_async

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    document = uploaded()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest(document)

    def commit() -> None:
        for callback in callbacks:
            callback()

    async def drain() -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                async with asyncio.timeout(1.5):
                    received.append(await layer.receive(channel))
            except TimeoutError:
                return [m for m in received if m["type"] == "document.status"]

    async def observe() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # one event loop for the layer
        before = await drain()
        await sync_to_async(commit)()
        return before, await drain()

    before_commit, after_commit = async_to_sync(observe)()
    assert before_commit and all(e["status"] != "ready" for e in before_commit), before_commit
    # The row's transitions are announced after the commit: its start, then "ready" with the chunks.
    assert [(e["status"], e["stage"]) for e in after_commit] == [("processing", "starting"), ("ready", "done")]
    assert after_commit[-1]["progress"] == 100


async def _receive(layer: Any, channel: str) -> dict[str, Any]:
    import asyncio

    async with asyncio.timeout(3):
        return await layer.receive(channel)


def test_the_ingestion_row_names_its_celery_task_for_the_ledgers_retry(
    api: Any, uploaded: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from documents.tasks import IngestionTask, ingest_document
    from tasks.ledger import tracked_task_for

    document = uploaded()
    task = Task.objects.get(pk=document.task_id)
    assert task.celery_task_name == "documents.ingest"
    tracked = tracked_task_for(task)
    assert isinstance(tracked, IngestionTask) and tracked.name == ingest_document.name
    Task.objects.filter(pk=document.task_id).update(status=Task.Status.FAILED, error={"type": "x", "message": "y"})
    Document.objects.filter(pk=document.pk).update(status=Document.Status.FAILED)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(f"/api/v1/tasks/{document.task_id}/retry/")
    assert response.status_code == 202, response.content
    assert any("task_enqueue" in callback.__qualname__ for callback in callbacks)
    # the retry moved the document back to waiting, in the same transaction as the row
    document.refresh_from_db()
    assert document.status == Document.Status.PENDING
    body = api.get(f"/api/v1/documents/{document.pk}/").json()
    assert (body["status"], body["stage"], body["error"]) == ("pending", "queued", None)

    ingest(document)  # what the worker runs for the retried row
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert ingestion_error(Task.objects.get(pk=document.task_id)) is None


def test_cancelling_a_pending_ingestion_through_the_tasks_api_fails_the_document(
    uploaded: Any, api: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Cancelled before any worker picked it up: the document must not stay ``pending`` forever."""
    document = uploaded(make_pdf(known_pages()))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/tasks/{document.task_id}/cancel/")
    assert response.status_code == 200, response.content
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert ingestion_error(Task.objects.get(pk=document.task_id))["type"] == "cancelled"
    assert api.get(f"/api/v1/documents/{document.pk}/").json()["error"]["type"] == "cancelled"


def test_the_watchdog_failing_a_stalled_ingestion_fails_its_document(
    uploaded: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from tasks.services import task_fail_stalled

    document = uploaded(make_pdf(known_pages()))
    long_ago = timezone.now() - timedelta(hours=2)
    Task.objects.filter(pk=document.task_id).update(
        status=Task.Status.PROCESSING, started_at=long_ago, heartbeat_at=long_ago
    )
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING)
    with django_capture_on_commit_callbacks(execute=True):
        assert [t.pk for t in task_fail_stalled(timeout_seconds=60)] == [document.task_id]
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert Task.objects.get(pk=document.task_id).error["type"] == "stalled"
    # and it can be run again
    assert Task.objects.get(pk=document.task_id).status == Task.Status.FAILED


def _drain(layer: Any, channel: str) -> list[dict[str, Any]]:
    """Every message waiting on ``channel`` (until a quiet second)."""
    import asyncio

    async def drain() -> list[dict[str, Any]]:
        received = []
        while True:
            try:
                async with asyncio.timeout(1.0):
                    received.append(await layer.receive(channel))
            except TimeoutError:
                return received

    return async_to_sync(drain)()


def test_one_progress_report_is_one_row_write_and_one_document_status_event(uploaded: Any, user: User) -> None:
    """The task row is the one record of the run: a report reads it once (the checkpoint), writes it
    once, never touches the document, and sends exactly one ``document.status`` event built from it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from documents.ingestion_progress import Progress

    document = uploaded()
    Task.objects.filter(pk=document.task_id).update(status=Task.Status.PROCESSING)  # a worker took it
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), channel)
    progress = Progress(str(document.task_id))

    with CaptureQueriesContext(connection) as queries:
        progress(60, "embedding")

    sql = [query["sql"] for query in queries.captured_queries]
    writes = [statement for statement in sql if not statement.startswith("SELECT")]
    assert len(sql) == 2, sql
    assert len(writes) == 1 and writes[0].startswith('UPDATE "tasks_task"'), writes
    assert not any("documents_document" in statement for statement in sql)
    received = _drain(layer, channel)
    assert [(e["type"], e["status"], e["progress"], e["stage"]) for e in received] == [
        ("document.status", "processing", 60, "embedding")
    ]
    assert received[0]["document_id"] == str(document.pk) and received[0]["task_id"] == str(document.task_id)
    task = Task.objects.get(pk=document.task_id)
    assert (task.progress, task.stage) == (60, "embedding")
    assert received[0]["timings"] == task.timings


def test_a_whole_ingestion_writes_the_document_only_at_its_transitions(
    uploaded: Any, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    """pending → processing → ready: two document writes, whatever the number of progress reports."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    document = uploaded()
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(user.pk), channel)

    with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        ingest(document)

    document_writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "documents_document"')]
    assert len(document_writes) == 2, document_writes
    task_writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "tasks_task"')]
    received = _drain(layer, channel)
    # one document.status event per write of the task row: every progress report, the start and the end
    assert [e["type"] for e in received] == ["document.status"] * len(task_writes)
    assert len(task_writes) >= 8 and received[-1]["status"] == "ready"
