"""Multiprocess metrics: a prefork Celery worker's ingestion reaches the web process's ``/metrics``.

Real processes: daphne (``config.serve``) and ``celery worker -P prefork`` on the session's database
and broker, both with one ``PROMETHEUS_MULTIPROC_DIR``; a PDF uploaded over HTTP, ingested by the
worker's child process, scraped from daphne with the bearer token.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts.authentication import tokens_for_user
from tests.chat.test_metrics import SAMPLE
from tests.documents.pdfs import make_pdf
from tests.subprocesses import build_subprocess_env, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TOKEN = "metrics-token-for-the-test"


def samples_of(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and (match := SAMPLE.match(line)):
            samples[match[1] + (match[2] or "")] = float(match[3])
    return samples


def test_the_workers_ingestion_is_in_the_web_processes_scrape(
    start_celery_worker: Any, user: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = build_subprocess_env(
        PROMETHEUS_MULTIPROC_DIR=str(folder), METRICS_TOKEN=TOKEN, RATELIMIT_ENABLED="false", LOG_LEVEL="WARNING"
    )
    headers = {"Authorization": f"Bearer {tokens_for_user(user)['access']}", "X-Tenant-ID": user.tenant.slug}
    with start_celery_worker(env=env, pool="prefork"), daphne_server(env, tmp_path / "daphne.log") as base:
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401  # the token is required
        response = httpx.post(
            f"{base}/api/v1/documents/",
            headers=headers,
            timeout=30,
            files={"file": ("minutes.pdf", make_pdf(["The committee met on Tuesday."] * 2), "application/pdf")},
        )
        assert response.status_code == 202, response.text
        document_url = f"{base}/api/v1/documents/{response.json()['id']}/"
        deadline = time.monotonic() + 90
        while (status := httpx.get(document_url, headers=headers, timeout=10).json()["status"]) != "ready":
            assert status in ("pending", "processing") and time.monotonic() < deadline, status
            time.sleep(0.3)

        scrape = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert scrape.status_code == 200
        samples = samples_of(scrape.text)
        # Recorded in the worker's child process, served by daphne:
        assert samples.get("documind_ingest_documents_total") == 1, scrape.text[:2000]
        assert samples.get("documind_ingest_pages_sum") == 2
        assert samples.get('documind_ingest_stage_seconds_count{stage="embed"}') == 1
        # ... beside daphne's own requests, and the ledger read at scrape time.
        assert any(k.startswith("django_http_requests_total_by_method_total") for k in samples)
        assert samples.get('documind_tasks{state="completed"}') == 1
    # The files are named <host>-<pid> (containers share the folder: PIDs alone would collide).
    names = sorted(path.name for path in folder.iterdir())
    assert names and all(name.endswith(".db") and "-" in name.split("_")[-1] for name in names), names
