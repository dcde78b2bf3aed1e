"""Fixtures of the documents tests: offline embeddings, upload helpers, synchronous ingestion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery.result import EagerResult
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from documents.models import Document
from documents.tasks import ingest_document
from tests.documents.pdfs import filler, make_pdf

DOCUMENTS_URL = "/api/v1/documents/"
SEARCH_URL = "/api/v1/search/"
PROJECTS_URL = "/api/v1/projects/"

KNOWN_SENTENCE = "The quarterly zeppelin maintenance budget was approved by the harbour committee on Tuesday."


@pytest.fixture(autouse=True)
def _offline_embeddings(settings: Any) -> None:
    """Every documents test embeds with the offline hashing provider unless it says otherwise."""
    settings.EMBEDDING_PROVIDER = "hashing"
    settings.OPENAI_API_KEY = ""
    settings.RATELIMIT_ENABLED = False


def pdf_upload(data: bytes, name: str = "report.pdf", content_type: str = "application/pdf") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def upload(client: APIClient, data: bytes, name: str = "report.pdf", **fields: Any) -> Any:
    """POST a file to /documents/ as multipart."""
    return client.post(DOCUMENTS_URL, {"file": pdf_upload(data, name), **fields}, format="multipart")


def ingest_outcome(document: Document | str) -> EagerResult:
    """Run the ingestion task now, in this process, through Celery's API (``apply``: the same task
    class and ledger hooks as a worker) as the run that owns the document's current task row."""
    pk = document.pk if isinstance(document, Document) else document
    fresh = Document.objects.select_related("task").get(pk=pk)
    return ingest_document.apply(
        kwargs={"document_id": str(fresh.pk), "task_row_id": str(fresh.task_id)},
        task_id=fresh.task.celery_task_id or None,
        throw=False,  # Celery's eager mode would raise before on_failure records the error on the row
    )


def ingest(document: Document | str) -> dict[str, Any]:
    """:func:`ingest_outcome` and its result (the summary the task row stores); a failure is raised."""
    return ingest_outcome(document).get(propagate=True)


def known_pages() -> list[str]:
    """Three pages; the known sentence is in the middle of page 2."""
    return [
        filler(180, seed=1),
        filler(90, seed=2) + " " + KNOWN_SENTENCE + " " + filler(90, seed=3),
        filler(180, seed=4),
    ]


@pytest.fixture
def uploaded(api: APIClient) -> Callable[..., Document]:
    """Upload a PDF through the API (202) and return its document row, not yet ingested."""

    def make(
        data: bytes | None = None, name: str = "report.pdf", client: APIClient | None = None, **fields: Any
    ) -> Document:
        response = upload(client or api, data if data is not None else make_pdf(known_pages()), name, **fields)
        assert response.status_code == 202, response.content[:500]
        return Document.objects.get(pk=response.json()["id"])

    return make


@pytest.fixture
def ready_document(uploaded: Callable[..., Document]) -> Callable[..., Document]:
    """Upload and ingest: a ``ready`` document."""

    def make(
        data: bytes | None = None, name: str = "report.pdf", client: APIClient | None = None, **fields: Any
    ) -> Document:
        document = uploaded(data, name, client, **fields)
        ingest(document)
        document.refresh_from_db()
        assert document.status == Document.Status.READY, document.task.error
        return document

    return make
