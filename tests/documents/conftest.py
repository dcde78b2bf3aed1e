"""Fixtures of the documents tests: offline embeddings, upload helpers, synchronous ingestion."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from documents.ingestion import document_ingest
from documents.models import Document
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


def ingest(document: Document | str) -> dict[str, Any]:
    """Run the ingestion pipeline now, in this process, for the document's current task row."""
    pk = document.pk if isinstance(document, Document) else document
    fresh = Document.objects.get(pk=pk)
    return document_ingest(document_id=str(fresh.pk), task_row_id=str(fresh.task_id) if fresh.task_id else None)


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
        assert document.status == Document.Status.READY, document.error
        return document

    return make
