"""Hostile and scanned PDFs through a REAL Celery worker (prefork pool) and its sandboxed children.

* two bombs from one tenant and an ordinary PDF from another: the bombs end ``pdf_too_complex`` fast,
  the ordinary one is ready in about its usual time, the pool process survives;
* a scanned PDF becomes ready through OCR and keyword search finds its words on the right pages,
  the results saying ``source: ocr``;
* cancelling or deleting a document mid-OCR kills its OCR child within 5 s, leaving no chunks (and,
  deleted, no file);
* a pool process SIGKILLed mid-OCR takes its OCR child with it; the message is redelivered and the
  document ends ready with no duplicate chunks.
"""

from __future__ import annotations

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
from tests.conftest import make_client
from tests.documents import hostile
from tests.documents.conftest import SEARCH_URL, known_pages, upload
from tests.documents.pdfs import filler, make_pdf
from tests.subprocesses import WorkerProcess, build_subprocess_env, celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCAN_PAGES = [
    ["Scanned page one talks about the harbour.", "Nothing else of note here."],
    ["The zeppelin maintenance budget was approved.", "Invoices are paid within thirty days."],
    ["Page three lists forty lighthouses.", "They are painted white and red."],
]


@pytest.fixture(scope="module")
def sandbox_worker(
    django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """One prefork worker with one pool process, the default sandbox limits and OCR on."""
    with django_db_blocker.unblock():
        env = build_subprocess_env(EMBEDDING_PROVIDER="hashing", OPENAI_API_KEY="", LOG_FORMAT="console")
        with celery_worker(tmp_path_factory.mktemp("sandbox-worker"), env=env, pool="prefork", concurrency=1) as worker:
            yield worker


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, worker: WorkerProcess) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; worker output:\n{worker.output()[-4000:]}")


def finished(pk: str) -> Document | None:
    """The document once it is ready or failed *and* its task row is final (the row holds the error)."""
    document = Document.objects.filter(pk=pk).select_related("task").first()
    if document is None or document.status not in ("ready", "failed"):
        return None
    return document if document.task is None or document.task.status in Task.TERMINAL else None


def children(worker: WorkerProcess, mode: str | None = None) -> list[psutil.Process]:
    """The worker's pool processes, or (``mode``) the sandbox children of that mode."""
    found = []
    for process in psutil.Process(worker.process.pid).children(recursive=True):
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        is_child = "documents.pdf_child" in command
        if (mode is None and not is_child) or (mode is not None and is_child and f"pdf_child {mode}" in command):
            found.append(process)
    return found


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ingest_seconds(api: APIClient, data: bytes, name: str, worker: WorkerProcess) -> tuple[Document, float]:
    started = time.monotonic()
    response = upload(api, data, name)
    assert response.status_code == 202, response.content
    document = wait_for(lambda: finished(response.json()["id"]), timeout=120, what=name, worker=worker)
    return document, time.monotonic() - started


def test_bombs_fail_fast_and_another_tenants_pdf_is_ready_as_usual(
    sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient, other_user: Any
) -> None:
    other_api = make_client(other_user)
    ordinary = [filler(300, seed=i) for i in range(20)]
    baseline, usual = ingest_seconds(other_api, make_pdf(ordinary), "usual.pdf", sandbox_worker)
    assert baseline.status == "ready"
    pool_before = {p.pid for p in children(sandbox_worker)}

    started = time.monotonic()
    bombs = [
        upload(api, hostile.shared_stream_bomb(pages=3), "bomb-a.pdf").json()["id"],
        upload(api, hostile.shared_stream_bomb(pages=200, megabytes=30), "bomb-b.pdf").json()["id"],
    ]
    response = upload(other_api, make_pdf([*ordinary, "and one more page"]), "ordinary.pdf")
    assert response.status_code == 202, response.content
    document = wait_for(lambda: finished(response.json()["id"]), timeout=120, what="ordinary", worker=sandbox_worker)
    seconds = time.monotonic() - started

    assert document.status == "ready"
    assert seconds < usual + 12, (seconds, usual)  # the bombs cost seconds, not minutes
    for pk in bombs:
        bomb = wait_for(lambda pk=pk: finished(pk), timeout=30, what="a bomb", worker=sandbox_worker)
        assert bomb.status == "failed"
        task = bomb.task
        assert task.status == "failed" and task.error["type"] == "pdf_too_complex", task.error
        assert "Page 1" in task.error["message"]
        assert (task.finished_at - task.started_at).total_seconds() < 8
    assert {p.pid for p in children(sandbox_worker)} == pool_before  # no pool process died


def test_a_scanned_pdf_is_ready_and_its_words_are_found_on_their_pages(
    sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    data = hostile.ccitt_scan(SCAN_PAGES)
    document, _ = ingest_seconds(api, data, "scan.pdf", sandbox_worker)
    assert document.status == "ready", document.task.error
    assert document.page_count == 3
    timings = api.get(f"/api/v1/documents/{document.pk}/").json()["timings"]
    assert timings["ocr"] > 0 and set(timings) >= {"extract", "ocr", "chunk", "embed", "store", "index"}

    results = api.post(SEARCH_URL, {"query": "zeppelin maintenance", "mode": "keyword"}, format="json").json()
    hit = results["results"][0]
    assert hit["document_id"] == str(document.pk)
    assert hit["page_start"] <= 2 <= hit["page_end"]
    assert hit["source"] == "ocr"
    assert "zeppelin maintenance budget" in hit["text"]


def test_a_mixed_pdf_keeps_both_sources(sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient) -> None:
    data = hostile.mixed_pdf(known_pages(), ["The scanned annex lists forty lighthouses."])
    document, _ = ingest_seconds(api, data, "mixed.pdf", sandbox_worker)
    assert document.status == "ready", document.task.error
    sources = set(Chunk.objects.filter(document=document).values_list("source", flat=True))
    assert sources == {"text", "ocr"}
    hit = api.post(SEARCH_URL, {"query": "lighthouses annex", "mode": "keyword"}, format="json").json()["results"][0]
    assert (hit["page_end"], hit["source"]) == (4, "ocr")


def test_a_photo_ends_pdf_no_text_saying_ocr_found_nothing(
    sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    document, _ = ingest_seconds(api, hostile.photo_pdf(), "photo.pdf", sandbox_worker)
    assert document.status == "failed"
    assert document.task.error["type"] == "pdf_no_text"
    assert "OCR found no text" in document.task.error["message"]


def start_scan(api: APIClient, worker: WorkerProcess, name: str) -> tuple[str, str, psutil.Process]:
    """Upload a 3-page scan and wait until its OCR child runs; returns the document, task and child."""
    response = upload(api, hostile.ccitt_scan(SCAN_PAGES), name)
    assert response.status_code == 202, response.content
    ocr = wait_for(lambda: children(worker, "ocr"), timeout=60, what="the OCR child", worker=worker)
    return response.json()["id"], response.json()["task"]["id"], ocr[0]


def test_cancel_mid_ocr_kills_the_child_within_5_seconds(
    sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    pk, task_id, ocr = start_scan(api, sandbox_worker, "cancel-ocr.pdf")

    started = time.monotonic()
    assert api.post(f"/api/v1/tasks/{task_id}/cancel/").status_code == 200
    wait_for(lambda: gone(ocr.pid), timeout=5, what="the OCR child to die", worker=sandbox_worker)
    assert time.monotonic() - started < 5

    document = wait_for(lambda: finished(pk), timeout=10, what="the document to fail", worker=sandbox_worker)
    assert document.status == "failed" and Task.objects.get(pk=task_id).status == "cancelled"
    assert not Chunk.objects.filter(document_id=pk).exists()


def test_delete_mid_ocr_kills_the_child_and_leaves_nothing(
    sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    pk, task_id, ocr = start_scan(api, sandbox_worker, "delete-ocr.pdf")
    path = Path(Document.objects.get(pk=pk).file.path)

    started = time.monotonic()
    assert api.delete(f"/api/v1/documents/{pk}/").status_code == 204
    wait_for(lambda: gone(ocr.pid), timeout=5, what="the OCR child to die", worker=sandbox_worker)
    assert time.monotonic() - started < 5

    wait_for(
        lambda: Task.objects.get(pk=task_id).status in Task.TERMINAL, timeout=10, what="stop", worker=sandbox_worker
    )
    time.sleep(0.5)  # a late write would land now
    assert not Document.objects.filter(pk=pk).exists()
    assert not Chunk.objects.filter(document_id=pk).exists()
    assert not path.exists()


def test_pool_process_killed_mid_ocr_takes_its_child_and_the_redelivery_finishes(
    sandbox_worker: WorkerProcess, transactional_db: Any, api: APIClient
) -> None:
    pk, task_id, ocr = start_scan(api, sandbox_worker, "kill-ocr.pdf")
    pool = children(sandbox_worker)
    assert pool

    for process in pool:
        os.kill(process.pid, signal.SIGKILL)
    wait_for(lambda: gone(ocr.pid), timeout=5, what="the orphaned OCR child to die", worker=sandbox_worker)

    document = wait_for(lambda: finished(pk), timeout=180, what="the redelivered run", worker=sandbox_worker)
    assert document.status == "ready", document.task.error
    indexes = list(Chunk.objects.filter(document_id=pk).values_list("index", flat=True))
    assert sorted(indexes) == list(range(document.chunk_count)) and document.chunk_count > 0
    task = wait_for(
        lambda: (t := Task.objects.get(pk=task_id)).status in Task.TERMINAL and t,
        timeout=30,
        what="the task row",
        worker=sandbox_worker,
    )
    assert (task.status, task.attempts) == ("completed", 2)
    assert {p.pid for p in children(sandbox_worker)}.isdisjoint({p.pid for p in pool})
