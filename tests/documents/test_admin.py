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


def test_the_admin_cannot_move_a_document_or_project_across_tenants(
    operator_client: Client, ready_document: Any, api: Any, client_for: Any, other_user: User, other_tenant: Any
) -> None:
    """A document's chunks, file folder, owner and project all belong to its tenant: the change form
    keeps the tenant fixed and refuses another tenant's owner or project."""
    from documents.models import Project

    document = ready_document()
    mine = Project.objects.get(pk=api.post("/api/v1/projects/", {"name": "Mine"}, format="json").json()["id"])
    theirs = Project.objects.get(
        pk=client_for(other_user).post("/api/v1/projects/", {"name": "Theirs"}, format="json").json()["id"]
    )
    url = f"/admin/documents/document/{document.pk}/change/"
    base = {"title": "Renamed", "tenant": str(other_tenant.pk), "owner": str(document.owner_id), "project": ""}

    response = operator_client.post(url, base)  # the tenant field is not editable: ignored
    assert response.status_code == 302, response.content[:2000]
    document.refresh_from_db()
    assert (document.title, document.tenant_id) == ("Renamed", mine.tenant_id)
    assert set(Chunk.objects.filter(document=document).values_list("tenant_id", flat=True)) == {document.tenant_id}

    for field, value in (("owner", str(other_user.pk)), ("project", str(theirs.pk))):
        response = operator_client.post(url, {**base, field: value})
        assert response.status_code == 200 and b"another tenant" in response.content, (field, response.status_code)
    document.refresh_from_db()
    assert document.owner.tenant_id == document.tenant_id and document.project_id is None

    assert operator_client.post(url, {**base, "project": str(mine.pk)}).status_code == 302
    document.refresh_from_db()
    assert document.project_id == mine.pk

    project_url = f"/admin/documents/project/{mine.pk}/change/"
    response = operator_client.post(
        project_url, {"name": "Mine", "description": "", "settings": "{}", "tenant": str(other_tenant.pk)}
    )
    assert response.status_code == 302, response.content[:2000]
    mine.refresh_from_db()
    assert mine.tenant_id == document.tenant_id
