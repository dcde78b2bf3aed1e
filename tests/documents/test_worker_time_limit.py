"""A task that hits its soft time limit, in a real prefork worker (``CELERY_TASK_SOFT_TIME_LIMIT``, README).

The worker (and the enqueuing process) get a 1 s soft limit (and a hard one far above it) and a 500-page PDF that pypdf needs
far longer than that to read: Celery raises ``SoftTimeLimitExceeded`` inside the pool process, the
ingestion fails as ``ingestion_timeout`` with no chunk stored, the task row records it, and the pool
process is still there for the next task (a hard limit would have killed it).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from documents.models import Chunk
from tasks.models import Task
from tests.documents.conftest import upload
from tests.documents.pdfs import make_pdf
from tests.documents.test_worker import big_pdf, document_in, pool_processes, wait_for
from tests.subprocesses import build_subprocess_env, celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_an_ingestion_over_the_soft_time_limit_fails_cleanly(
    transactional_db: Any, api: APIClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Celery puts the limits in the message (its "timelimit" header) from the ENQUEUING process's
    # settings, bound to the task object when the app loads: this process is the web here, so it gets
    # the limits the environment below gives the worker.
    from documents.tasks import ingest_document

    monkeypatch.setattr(ingest_document, "soft_time_limit", 1)
    monkeypatch.setattr(ingest_document, "time_limit", 120)
    monkeypatch.setattr(ingest_document, "_exec_options", None)  # Celery caches them at the first send
    env = build_subprocess_env(
        PDF_EXTRACTOR="pypdf",
        EMBEDDING_PROVIDER="hashing",
        OPENAI_API_KEY="",
        LOG_FORMAT="console",
        CELERY_TASK_SOFT_TIME_LIMIT="1",
        CELERY_TASK_TIME_LIMIT="120",
    )
    with celery_worker(tmp_path, env=env, pool="prefork", concurrency=1) as worker:
        pool_before = {p.pid for p in pool_processes(worker)}
        started = time.monotonic()
        response = upload(api, big_pdf(seed=3), "slow.pdf")
        assert response.status_code == 202, response.content
        pk = response.json()["id"]
        document = wait_for(lambda: document_in(pk, "ready", "failed"), timeout=90, what="the run's end", worker=worker)
        elapsed = time.monotonic() - started

        assert document.status == "failed", worker.output()[-3000:]
        task = wait_for(
            lambda: (t := Task.objects.get(pk=document.task_id)).status in Task.TERMINAL and t,
            timeout=30,
            what="the task row to finish",
            worker=worker,
        )
        assert task.status == "failed" and task.error["type"] == "ingestion_timeout", task.error
        assert not Chunk.objects.filter(document_id=pk).exists()
        assert elapsed < 60, f"the soft limit (1 s) did not stop a run that took {elapsed:.0f}s"
        # a soft limit lets the pool process live on: the same process ingests the next upload
        quick = upload(api, make_pdf(["A short page that takes no time at all."]), "quick.pdf")
        ready = wait_for(
            lambda: document_in(quick.json()["id"], "ready", "failed"), timeout=60, what="the next run", worker=worker
        )
        assert ready.status == "ready", ready.task.error
        assert {p.pid for p in pool_processes(worker)} == pool_before
