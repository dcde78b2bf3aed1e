"""Across processes: a real Celery worker ingests an upload and delivers the signed ``document.ready``
to a receiver on loopback, which verifies it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from integrations.services import webhook_endpoint_create
from tests.documents.conftest import known_pages, upload
from tests.documents.pdfs import make_pdf
from tests.subprocesses import build_subprocess_env, celery_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_worker_delivers_signed_document_ready(tmp_path: Path, api: Any, tenant: Any, receivers: Any) -> None:
    receiver = receivers("https")
    endpoint = webhook_endpoint_create(tenant=tenant, created_by=None, url=receiver.url, events=["document.ready"])
    env = build_subprocess_env(
        EMBEDDING_PROVIDER="hashing",
        OPENAI_API_KEY="",
        WEBHOOK_ALLOWED_HOSTS="localhost",
        WEBHOOK_CA_BUNDLE=str(tmp_path / "ca.pem"),  # written by the receivers fixture
    )
    with celery_worker(tmp_path, env=env) as worker:
        response = upload(api, make_pdf(known_pages()))
        assert response.status_code == 202, response.content[:300]
        deadline = time.monotonic() + 90
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.2)
        assert receiver.received, worker.output()[-3000:]
    (got,) = receiver.received
    payload = Webhook(endpoint.secret).verify(got.body, got.headers)
    assert payload["type"] == "document.ready" and payload["data"]["document_id"] == response.json()["id"]
