"""Ingestion end to end with a REAL Celery worker subprocess (prefork pool, the session's broker and DB).

Upload through the API → the message goes out on commit → the worker ingests → search finds it.
A worker process killed (SIGKILL) mid-ingestion gets its message back (late ack, reject on worker
lost), a new pool process runs it again, and the document ends with no duplicate chunk. Cancel and
delete stop a running ingestion at its next checkpoint.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from rest_framework.test import APIClient

from documents.models import Chunk, Document
from tasks.models import Task
from tests.documents.conftest import KNOWN_SENTENCE, SEARCH_URL, known_pages, upload
from tests.documents.pdfs import filler, make_pdf
from tests.subprocesses import WorkerProcess, build_subprocess_env, celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def ingest_worker(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One prefork worker (one pool process) for the module; pypdf extraction, so big files take a while."""
    with django_db_blocker.unblock():
        env = build_subprocess_env(
            PDF_EXTRACTOR="pypdf", EMBEDDING_PROVIDER="hashing", OPENAI_API_KEY="", LOG_FORMAT="console"
        )
        with celery_worker(tmp_path_factory.mktemp("ingest-worker"), env=env, pool="prefork", concurrency=1) as worker:
            yield worker


def big_pdf(pages: int = 500, seed: int = 0) -> bytes:
    """``pages`` text-heavy pages (ten distinct ones repeated), quick to make, seconds to ingest with pypdf."""
    from pypdf import PdfReader, PdfWriter

    base = PdfReader(io.BytesIO(make_pdf([filler(450, seed=seed * 10 + i) for i in range(10)], font_size=9)))
    writer = PdfWriter()
    for number in range(pages):
        writer.add_page(base.pages[number % 10])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def wait_for(
    predicate: Callable[[], Any], *, timeout: float, what: str, worker: WorkerProcess, interval: float = 0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}; worker output:\n{worker.output()[-4000:]}")


def document_in(pk: str, *statuses: str) -> Document | None:
    """The document (with its task row, the record of its ingestion) once it has one of ``statuses``."""
    document = Document.objects.select_related("task").filter(pk=pk).first()
    return document if document is not None and document.status in statuses else None


def pool_processes(worker: WorkerProcess) -> list[psutil.Process]:
    return psutil.Process(worker.process.pid).children(recursive=True)


def test_upload_is_ingested_by_the_worker_and_searchable(
    ingest_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    response = upload(api, make_pdf(known_pages()))
    assert response.status_code == 202, response.content
    pk = response.json()["id"]

    document = wait_for(lambda: document_in(pk, "ready", "failed"), timeout=60, what="ingestion", worker=ingest_worker)

    assert document.status == "ready", document.task.error
    task = wait_for(
        lambda: (t := Task.objects.get(pk=document.task_id)).status in Task.TERMINAL and t,
        timeout=30,
        what="the task row to finish",
        worker=ingest_worker,
    )
    assert (task.status, task.progress, task.stage, task.attempts) == ("completed", 100, "done", 1)
    assert task.result["chunks"] == document.chunk_count == Chunk.objects.filter(document=document).count() > 0
    results = api.post(SEARCH_URL, {"query": "zeppelin maintenance budget"}, format="json").json()["results"]
    assert results[0]["document_id"] == pk and KNOWN_SENTENCE in results[0]["text"]


def test_killed_worker_process_is_redelivered_and_finishes_without_duplicates(
    ingest_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    response = upload(api, big_pdf(seed=1), "big.pdf")
    assert response.status_code == 202, response.content
    pk = response.json()["id"]

    # Wait until the pool process is well into the extraction, then kill it without warning.
    wait_for(
        lambda: (d := document_in(pk, "processing")) and d.task.stage == "extracting" and d.task.progress >= 8,
        timeout=60,
        what="extraction to start",
        worker=ingest_worker,
    )
    victims = pool_processes(ingest_worker)
    assert victims, "no pool process to kill"
    for process in victims:
        os.kill(process.pid, signal.SIGKILL)
    killed_at = Document.objects.get(pk=pk)
    assert killed_at.status == "processing"

    document = wait_for(
        lambda: document_in(pk, "ready", "failed"), timeout=120, what="the redelivered run", worker=ingest_worker
    )

    assert document.status == "ready", (document.task.error, ingest_worker.output()[-3000:])
    assert document.page_count == 500
    chunks = Chunk.objects.filter(document=document)
    indexes = list(chunks.values_list("index", flat=True))
    assert len(indexes) == len(set(indexes)) == document.chunk_count
    assert sorted(indexes) == list(range(document.chunk_count))
    task = wait_for(
        lambda: (t := Task.objects.get(pk=document.task_id)).status in Task.TERMINAL and t,
        timeout=30,
        what="the task row to finish",
        worker=ingest_worker,
    )
    assert task.status == "completed"
    assert task.attempts == 2  # the killed run and the redelivered one
    assert {p.pid for p in pool_processes(ingest_worker)}.isdisjoint({p.pid for p in victims})


def test_cancel_stops_a_running_ingestion(ingest_worker: WorkerProcess, transactional_db: Any, api: APIClient) -> None:
    response = upload(api, big_pdf(seed=2), "cancel-me.pdf")
    pk, task_id = response.json()["id"], response.json()["task"]["id"]
    wait_for(
        lambda: (d := document_in(pk, "processing")) and d.task.stage == "extracting",
        timeout=60,
        what="extraction to start",
        worker=ingest_worker,
    )

    assert api.post(f"/api/v1/tasks/{task_id}/cancel/").status_code == 200

    document = wait_for(lambda: document_in(pk, "failed", "ready"), timeout=60, what="the cancel", worker=ingest_worker)
    assert document.status == "failed"
    assert api.get(f"/api/v1/documents/{pk}/").json()["error"]["type"] == "cancelled"
    assert not Chunk.objects.filter(document=document).exists()
    assert Task.objects.get(pk=task_id).status == "cancelled"


def test_delete_during_ingestion_leaves_nothing_behind(
    ingest_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    response = upload(api, big_pdf(seed=3), "delete-me.pdf")
    pk, task_id = response.json()["id"], response.json()["task"]["id"]
    document = wait_for(lambda: document_in(pk, "processing"), timeout=60, what="processing", worker=ingest_worker)
    path = document.file.path

    assert api.delete(f"/api/v1/documents/{pk}/").status_code == 204

    wait_for(
        lambda: Task.objects.get(pk=task_id).status in Task.TERMINAL,
        timeout=60,
        what="the worker to stop",
        worker=ingest_worker,
    )
    assert Task.objects.get(pk=task_id).status == "cancelled"
    time.sleep(0.5)  # a late write would land now
    assert not Document.objects.filter(pk=pk).exists()
    assert not Chunk.objects.filter(document_id=pk).exists()
    assert not Path(path).exists()


def test_a_worker_reembeds_a_tenant_and_switches_it(
    ingest_worker: WorkerProcess, transactional_db: Any, api: APIClient, user: Any, tenant: Any
) -> None:
    from documents.embeddings import tenant_embedder_name
    from documents.local_embedder import LOCAL_MODEL
    from documents.models import ChunkEmbedding
    from documents.reembedding import reembed_start

    response = upload(api, make_pdf(known_pages()))
    pk = response.json()["id"]
    wait_for(lambda: document_in(pk, "ready"), timeout=60, what="ingestion", worker=ingest_worker)

    task = reembed_start(tenant=tenant, embedder="local", owner=user)
    task = wait_for(
        lambda: (t := Task.objects.get(pk=task.pk)).status in Task.TERMINAL and t,
        timeout=120,
        what="the re-embedding",
        worker=ingest_worker,
    )
    assert (task.status, task.progress, task.celery_task_name) == ("completed", 100, "documents.reembed"), task.error
    tenant.refresh_from_db()
    assert tenant_embedder_name(tenant) == "local"
    models = set(ChunkEmbedding.objects.filter(tenant=tenant).values_list("model", flat=True))
    assert models == {LOCAL_MODEL}
    results = api.post(SEARCH_URL, {"query": "zeppelin maintenance budget", "mode": "semantic"}, format="json")
    assert results.json()["results"][0]["document_id"] == pk
