"""An ingestion that hits its soft time limit, in a real prefork worker (``CELERY_TASK_SOFT_TIME_LIMIT``).

Deterministic, whatever the machine's load: the worker embeds with the ``openai`` provider against the
suite's fake OpenAI server, which holds the embedding request for 60 s (``slow_first_token``), far past
the 3 s soft limit and short of the 120 s hard one, with the client's timeout at 100 s and no retry.
Nothing but the soft limit can end the run early: wherever it lands (reading the PDF in the sandbox or
waiting for the embeddings), the ingestion must fail as ``ingestion_timeout`` with no chunk stored, the
task row must say so (not stay processing), and the pool process must live on to ingest the next upload
(the fault holds one request only).

Celery puts the limits in the message (its ``timelimit`` header) from the enqueuing process's task
options, bound when the app loads: this process enqueues (the upload's view), so it gets the limits.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from documents.models import Chunk
from tasks.models import Task
from tests.documents.conftest import known_pages, upload
from tests.documents.pdfs import make_pdf
from tests.documents.test_worker import document_in, pool_processes, wait_for
from tests.fake_openai import FakeOpenAI
from tests.subprocesses import build_subprocess_env, celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_an_ingestion_over_its_soft_time_limit_fails_cleanly_and_the_pool_lives_on(
    transactional_db: Any, api: APIClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI
) -> None:
    from documents.tasks import ingest_document

    monkeypatch.setattr(ingest_document, "soft_time_limit", 3)
    monkeypatch.setattr(ingest_document, "time_limit", 120)
    monkeypatch.setattr(ingest_document, "_exec_options", None)  # Celery caches them at the first send
    fake_openai.set_fault("slow_first_token", endpoint="embeddings", times=1, delay=60)
    env = build_subprocess_env(
        **fake_openai.process_env(),
        EMBEDDING_PROVIDER="openai",
        OPENAI_TIMEOUT_SECONDS="100",
        LOG_FORMAT="console",
    )
    with celery_worker(tmp_path, env=env, pool="prefork", concurrency=1) as worker:
        pool_before = {p.pid for p in pool_processes(worker)}
        response = upload(api, make_pdf(known_pages()), "held.pdf")
        assert response.status_code == 202, response.content
        pk = response.json()["id"]

        document = wait_for(lambda: document_in(pk, "ready", "failed"), timeout=50, what="the run's end", worker=worker)

        assert document.status == "failed", worker.output()[-3000:]
        task = wait_for(
            lambda: (t := Task.objects.get(pk=document.task_id)).status in Task.TERMINAL and t,
            timeout=30,
            what="the task row to finish",
            worker=worker,
        )
        assert task.status == "failed", task.error
        assert task.error["type"] == "ingestion_timeout" and task.error["message"], task.error
        assert not Chunk.objects.filter(document_id=pk).exists()

        # a soft limit lets the pool process live on: the same process ingests the next upload
        quick = upload(api, make_pdf(["A short page, embedded at once this time."]), "quick.pdf")
        ready = wait_for(
            lambda: document_in(quick.json()["id"], "ready", "failed"), timeout=60, what="the next run", worker=worker
        )
        assert ready.status == "ready", ready.task.error
        assert {p.pid for p in pool_processes(worker)} == pool_before
