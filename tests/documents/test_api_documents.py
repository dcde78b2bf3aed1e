"""The documents API besides upload: list, retrieve, patch, delete, reprocess, chunks, file; tenancy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from documents.models import Chunk, Document
from tasks.models import Task
from tests.crosstenant import IsolatedResourceTests, assert_envelope, assert_isolated, assert_requires_auth
from tests.documents.conftest import DOCUMENTS_URL, ingest, known_pages
from tests.documents.pdfs import filler, make_pdf
from tests.factories import DocumentFactory, UserFactory


def detail(document: Document, suffix: str = "") -> str:
    return f"{DOCUMENTS_URL}{document.pk}/{suffix}"


def test_retrieve_shows_status_counts_and_task(api: APIClient, ready_document: Any) -> None:
    document = ready_document()
    body = api.get(detail(document)).json()
    assert body["id"] == str(document.pk)
    assert (body["status"], body["progress"], body["stage"]) == ("ready", 100, "done")
    assert body["page_count"] == 3 and body["chunk_count"] == document.chunk_count > 0
    assert body["size"] == document.size and body["sha256"] == document.sha256
    assert body["error"] is None
    assert body["task"]["id"] == str(document.task_id)  # task ids are strings in JSON
    assert body["embedding_model"] == "hashing-v1"


def test_failed_document_shows_its_typed_error(api: APIClient, uploaded: Any) -> None:
    from documents.ingestion import IngestionFailed
    from tests.documents.pdfs import make_image_pdf

    document = uploaded(make_image_pdf())
    with pytest.raises(IngestionFailed):
        ingest(document)
    body = api.get(detail(document)).json()
    assert body["status"] == "failed"
    assert body["error"]["type"] == "pdf_no_text"


def test_list_filters_and_pagination(api: APIClient, uploaded: Any, ready_document: Any) -> None:
    project = api.post("/api/v1/projects/", {"name": "P"}, format="json").json()
    ready = ready_document(make_pdf([filler(50, 1)]), "alpha.pdf", title="Alpha report")
    pending = uploaded(make_pdf([filler(50, 2)]), "beta.pdf", title="Beta notes", project=project["id"])
    uploaded(make_pdf([filler(50, 3)]), "gamma.pdf", title="Gamma report")

    def ids(query: str) -> list[str]:
        response = api.get(DOCUMENTS_URL + query)
        assert response.status_code == 200, response.content
        return [d["id"] for d in response.json()["results"]]

    assert len(ids("")) == 3
    assert ids("?status=ready") == [str(ready.pk)]
    assert len(ids("?status=ready&status=pending")) == 3
    assert ids(f"?project={project['id']}") == [str(pending.pk)]
    assert set(ids("?title=report")) == {str(ready.pk), ids("?title=gamma")[0]}
    assert len(ids("?search=beta")) == 1
    page = api.get(DOCUMENTS_URL + "?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert_envelope(api.get(DOCUMENTS_URL + "?status=bogus"), 400, "validation_error")


def test_list_query_count_does_not_grow_with_documents(api: APIClient, uploaded: Any) -> None:
    for seed in range(2):
        uploaded(make_pdf([filler(20, seed)]), f"{seed}.pdf")
    with CaptureQueriesContext(connection) as few:
        assert api.get(DOCUMENTS_URL).status_code == 200
    for seed in range(2, 6):
        uploaded(make_pdf([filler(20, seed)]), f"{seed}.pdf")
    with CaptureQueriesContext(connection) as many:
        assert len(api.get(DOCUMENTS_URL).json()["results"]) == 6
    assert len(many) == len(few) <= 8


def test_members_see_the_tenants_documents(client_for: Any, tenant: Any, uploaded: Any) -> None:
    document = uploaded()
    colleague = UserFactory(tenant=tenant, role=User.Role.MEMBER)
    assert client_for(colleague).get(detail(document)).status_code == 200


def test_patch_title_and_project(api: APIClient, uploaded: Any) -> None:
    document = uploaded()
    project = api.post("/api/v1/projects/", {"name": "Q3"}, format="json").json()
    response = api.patch(detail(document), {"title": "Renamed", "project": project["id"]}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["title"], response.json()["project"]) == ("Renamed", project["id"])
    response = api.patch(detail(document), {"project": None}, format="json")
    assert response.json()["project"] is None
    assert_envelope(api.patch(detail(document), {"title": "  "}, format="json"), 400, "validation_error")
    assert_envelope(api.put(detail(document), {"title": "x"}, format="json"), 405)


def test_patch_to_another_tenants_project_is_refused(
    api: APIClient, client_for: Any, other_user: User, uploaded: Any
) -> None:
    document = uploaded()
    foreign = client_for(other_user).post("/api/v1/projects/", {"name": "Theirs"}, format="json").json()
    assert_envelope(api.patch(detail(document), {"project": foreign["id"]}, format="json"), 400, "validation_error")
    document.refresh_from_db()
    assert document.project_id is None


def test_only_the_owner_or_an_admin_changes_a_document(
    client_for: Any, tenant: Any, uploaded: Any, admin_api: APIClient
) -> None:
    document = uploaded()
    colleague = client_for(UserFactory(tenant=tenant, role=User.Role.MEMBER))
    viewer = client_for(UserFactory(tenant=tenant, role=User.Role.VIEWER))
    for client in (colleague, viewer):
        assert_envelope(client.patch(detail(document), {"title": "mine now"}, format="json"), 403, "permission_denied")
        assert_envelope(client.delete(detail(document)), 403, "permission_denied")
        assert_envelope(client.post(detail(document, "reprocess/")), 403, "permission_denied")
    assert admin_api.patch(detail(document), {"title": "by admin"}, format="json").status_code == 200


def test_delete_removes_row_chunks_and_file_and_cancels_ingestion(
    api: APIClient, uploaded: Any, ready_document: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ready = ready_document()
    path = Path(ready.file.path)
    assert path.exists() and Chunk.objects.filter(document=ready).exists()

    with django_capture_on_commit_callbacks(execute=True):  # the file goes when the deletion commits
        assert api.delete(detail(ready)).status_code == 204

    assert not Document.objects.filter(pk=ready.pk).exists()
    assert not Chunk.objects.filter(document_id=ready.pk).exists()
    assert not path.exists()
    assert_envelope(api.get(detail(ready)), 404, "not_found")

    running = uploaded(make_pdf(["still pending"]))
    task = Task.objects.get(pk=running.task_id)
    assert api.delete(detail(running)).status_code == 204
    task.refresh_from_db()
    assert task.status == Task.Status.CANCELLED


def test_files_go_with_documents_deleted_by_a_cascade(
    api: APIClient,
    client_for: Any,
    tenant: Any,
    other_user: User,
    uploaded: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """An operator deleting a user or a whole tenant (the admin) deletes their documents by cascade:
    the PDFs must leave the storage too, once that commits, and not before."""
    from django.db import transaction

    owner = UserFactory(tenant=tenant, role=User.Role.MEMBER)
    mine = uploaded(make_pdf(["uploaded by someone who leaves"]), client=client_for(owner))
    theirs = uploaded(make_pdf(["a document of the tenant that leaves"]), client=client_for(other_user))
    paths = [Path(mine.file.path), Path(theirs.file.path)]
    assert all(path.exists() for path in paths)

    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        owner.delete()
    assert not Document.objects.filter(pk=mine.pk).exists()
    assert paths[0].exists()  # not committed yet
    for callback in callbacks:
        callback()
    assert not paths[0].exists()

    with django_capture_on_commit_callbacks(execute=True):
        other_user.tenant.delete()
    assert not paths[1].exists()


def test_reprocess(api: APIClient, uploaded: Any) -> None:
    document = uploaded()
    first_task = document.task_id
    assert_envelope(api.post(detail(document, "reprocess/")), 409, "conflict")  # its ingestion is still pending

    ingest(document)
    chunk_ids = set(Chunk.objects.filter(document=document).values_list("pk", flat=True))
    response = api.post(detail(document, "reprocess/"))
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["status"], body["progress"], body["stage"]) == ("pending", 0, "queued")
    assert body["task"]["id"] != str(first_task) and body["task"]["status"] == "pending"

    ingest(document)
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    new_ids = set(Chunk.objects.filter(document=document).values_list("pk", flat=True))
    assert len(new_ids) == len(chunk_ids) and not new_ids & chunk_ids


def test_chunks_are_listed_in_order_and_paginated(api: APIClient, ready_document: Any, settings: Any) -> None:
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 60, 10
    document = ready_document(make_pdf(known_pages()))
    body = api.get(detail(document, "chunks/") + "?page_size=3").json()
    assert body["count"] == document.chunk_count > 3
    assert [c["index"] for c in body["results"]] == [0, 1, 2]
    first = body["results"][0]
    assert set(first) >= {"id", "index", "text", "page_start", "page_end", "token_count", "char_start", "char_end"}
    assert "embedding" not in first
    rest = api.get(body["next"]).json()
    assert rest["results"][0]["index"] == 3


def test_chunk_list_does_not_load_embeddings_or_search_vectors(api: APIClient, ready_document: Any) -> None:
    document = ready_document()
    with CaptureQueriesContext(connection) as queries:
        assert api.get(detail(document, "chunks/")).status_code == 200
    chunk_selects = [q["sql"] for q in queries if 'FROM "documents_chunk"' in q["sql"] and "COUNT(" not in q["sql"]]
    assert chunk_selects
    for sql in chunk_selects:
        assert '"embedding"' not in sql and '"search_vector"' not in sql, sql


@pytest.mark.parametrize("query", ["ordering=index", "ordering=-index", "search=x", "status=ready"])
def test_list_parameters_on_chunks_do_not_break_the_document_lookup(
    api: APIClient, ready_document: Any, query: str
) -> None:
    """The document's own list filters (ordering, search, status) must not reach its chunk list's lookup."""
    document = ready_document()
    response = api.get(detail(document, "chunks/") + "?" + query)
    assert response.status_code == 200, response.content[:300]
    assert [c["index"] for c in response.json()["results"]] == list(range(document.chunk_count))[:20]


def test_file_download(api: APIClient, uploaded: Any) -> None:
    data = make_pdf(known_pages())
    document = uploaded(data, "Annual Report.pdf")
    response = api.get(detail(document, "file/"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "Annual Report.pdf" in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == data


class TestDocumentsAreIsolated(IsolatedResourceTests):
    """Anonymous 401, own 200, another tenant's 404, a bounded list (the shared mixin)."""

    list_url = DOCUMENTS_URL
    verbs = ("get", "patch", "delete")
    foreign_body = {"title": "stolen"}

    def make_object(self, owner: User) -> Document:
        return DocumentFactory(owner=owner)

    def check_unchanged(self, obj: Document) -> None:
        assert Document.objects.get(pk=obj.pk).title == obj.title


def test_every_document_endpoint_is_isolated_between_tenants(
    api: APIClient, client_for: Any, other_user: User, ready_document: Any
) -> None:
    document = ready_document()
    foreign = client_for(other_user)
    assert_isolated(detail(document), api, foreign, verbs=("get", "patch", "delete"), body={"title": "stolen"})
    assert_isolated(detail(document, "chunks/"), api, foreign, verbs=("get",))
    assert_isolated(detail(document, "file/"), api, foreign, verbs=("get",))
    assert_envelope(foreign.post(detail(document, "reprocess/")), 404, "not_found")
    assert foreign.get(DOCUMENTS_URL).json()["count"] == 0
    document.refresh_from_db()
    assert document.title != "stolen" and document.status == Document.Status.READY


def test_document_endpoints_require_authentication(anon_api: APIClient, uploaded: Any) -> None:
    document = uploaded()
    for url in (DOCUMENTS_URL, detail(document), detail(document, "chunks/"), detail(document, "file/")):
        assert_requires_auth(url, anon_api)
    assert_requires_auth(detail(document, "reprocess/"), anon_api, verbs=("post",))


def test_unknown_document_is_404(api: APIClient) -> None:
    assert_envelope(api.get(DOCUMENTS_URL + "00000000-0000-0000-0000-000000000000/"), 404, "not_found")
    assert_envelope(api.get(DOCUMENTS_URL + "not-a-uuid/"), 404)


def test_a_ready_document_reads_done_even_before_its_task_row_completes(api: APIClient, uploaded: Any) -> None:
    """The worker commits "ready" with the chunks, then completes the task row: no "ready at 95 %"."""
    document = uploaded()
    Task.objects.filter(pk=document.task_id).update(status=Task.Status.PROCESSING, progress=95, stage="storing")
    Document.objects.filter(pk=document.pk).update(status=Document.Status.READY)
    body = api.get(f"{DOCUMENTS_URL}{document.pk}/").json()
    assert (body["status"], body["progress"], body["stage"]) == ("ready", 100, "done")
    assert body["task"]["progress"] == 95  # the row itself is shown as it is


def test_the_hand_built_representation_is_drfs_field_by_field_one(
    api: APIClient, uploaded: Any, ready_document: Any, user: User
) -> None:
    """DocumentSerializer builds its representation by hand (the list's hot path); for documents in every
    state it must equal what DRF's ModelSerializer makes of the declared fields, key for key and type for type."""
    import json

    from rest_framework import serializers
    from rest_framework.renderers import JSONRenderer

    from documents.ingestion import IngestionFailed
    from documents.serializers import DocumentSerializer
    from tests.documents.pdfs import make_image_pdf

    project = api.post("/api/v1/projects/", {"name": "Shapes"}, format="json").json()
    ready = ready_document(make_pdf([filler(60, 1)]), "ready.pdf")
    Document.objects.filter(pk=ready.pk).update(ocr_pages={"2": 0.91, "3": None})
    pending = uploaded(make_pdf([filler(60, 2)]), "pending.pdf", project=project["id"])
    processing = uploaded(make_pdf([filler(60, 3)]), "processing.pdf")
    Document.objects.filter(pk=processing.pk).update(status=Document.Status.PROCESSING)
    Task.objects.filter(pk=processing.task_id).update(progress=40, stage="embed", timings={"extract": 0.25})
    failed = uploaded(make_image_pdf(), "scan.pdf")
    with pytest.raises(IngestionFailed):
        ingest(failed)
    taskless = DocumentFactory(tenant=user.tenant, owner=user, task=None)

    documents = list(Document.objects.select_related("task").filter(tenant=user.tenant).order_by("created_at"))
    assert len(documents) == 5
    for document in documents:
        serializer = DocumentSerializer(document)
        by_hand = serializer.data
        by_drf = serializers.ModelSerializer.to_representation(serializer, document)
        assert list(by_hand) == list(by_drf), document.original_filename
        assert JSONRenderer().render(by_hand) == JSONRenderer().render(by_drf), document.original_filename
        assert {type(v) for v in by_hand.values()} <= {str, int, float, dict, type(None)}

    listed = {d["id"]: d for d in api.get(DOCUMENTS_URL + "?page_size=50").json()["results"]}
    for document in documents:
        reference = json.loads(JSONRenderer().render(serializers.ModelSerializer.to_representation(
            DocumentSerializer(document), document
        )))  # fmt: skip
        assert listed[str(document.pk)] == reference
    assert listed[str(ready.pk)]["ocr_pages"] == {"2": 0.91, "3": None}
    assert listed[str(pending.pk)]["project"] == project["id"]
    assert listed[str(failed.pk)]["error"]["type"] == "pdf_no_text"
    assert listed[str(processing.pk)]["timings"] == {"extract": 0.25}
    assert listed[str(taskless.pk)]["task"] is None

    # the answers built from in-memory documents (upload, rename) are the ones a read gives back
    from tests.documents.conftest import upload

    fresh = upload(api, make_pdf([filler(60, 4)]), "fresh.pdf")
    assert fresh.status_code == 202
    uploaded_body = fresh.json()
    assert uploaded_body.pop("duplicate") is False
    assert uploaded_body == api.get(f"{DOCUMENTS_URL}{uploaded_body['id']}/").json()
    renamed = api.patch(detail(pending), {"title": "Renamed"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"
    assert renamed.json() == api.get(detail(pending)).json()
