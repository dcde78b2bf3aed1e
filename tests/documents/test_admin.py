"""Operators' admin: documents (status filter, reprocess), projects, chunks read-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from documents.models import Chunk, Document
from tasks.models import Task
from tests.documents.pdfs import make_pdf


@pytest.fixture
def operator_client(db: Any) -> Client:
    operator = User.objects.create_superuser("ops@documind.test", "operator-pass-123")
    client = Client()
    client.force_login(operator)
    return client


def test_admin_pages_render(operator_client: Client, ready_document: Any, api: Any) -> None:
    document = ready_document()
    api.post("/api/v1/projects/", {"name": "Ops"}, format="json")
    chunk = Chunk.objects.filter(document=document).first()
    for url in (
        "/admin/documents/document/",
        "/admin/documents/document/?status__exact=ready",
        f"/admin/documents/document/{document.pk}/change/",
        "/admin/documents/project/",
        "/admin/documents/chunk/",
        f"/admin/documents/chunk/{chunk.pk}/change/",
    ):
        response = operator_client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    assert document.title in operator_client.get("/admin/documents/document/?status__exact=ready").content.decode()
    assert document.title not in operator_client.get("/admin/documents/document/?status__exact=failed").content.decode()


def test_chunks_are_read_only(operator_client: Client, ready_document: Any) -> None:
    document = ready_document()
    chunk = Chunk.objects.filter(document=document).first()
    assert operator_client.get("/admin/documents/chunk/add/").status_code == 403
    response = operator_client.post(f"/admin/documents/chunk/{chunk.pk}/change/", {"text": "edited"})
    assert response.status_code == 403
    assert operator_client.post(f"/admin/documents/chunk/{chunk.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Chunk.objects.get(pk=chunk.pk).text != "edited"


def test_reprocess_action(operator_client: Client, ready_document: Any, uploaded: Any) -> None:
    ready = ready_document()
    pending = uploaded(make_pdf(["another file, still pending"]))
    response = operator_client.post(
        "/admin/documents/document/",
        {"action": "reprocess_documents", "_selected_action": [str(ready.pk), str(pending.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "1 document(s) queued for reprocessing; 1 already in progress." in response.content.decode()
    ready.refresh_from_db()
    assert ready.status == Document.Status.PENDING
    assert Task.objects.filter(pk=ready.task_id, status=Task.Status.PENDING).exists()
