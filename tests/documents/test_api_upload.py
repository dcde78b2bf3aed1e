"""POST /documents/: the happy path, every refusal (before anything is stored), duplicates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.models import User
from config.errors import PayloadTooLarge
from documents.models import Chunk, Document
from documents.uploads import MaxSizeUploadHandler
from tasks.models import Task
from tests.crosstenant import assert_envelope, assert_requires_auth
from tests.documents.conftest import DOCUMENTS_URL, known_pages, upload
from tests.documents.pdfs import encrypt_pdf, make_blank_pdf, make_pdf, png_bytes
from tests.factories import UserFactory


def stored_files(tenant: Any) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "tenants" / str(tenant.pk) / "documents"
    return sorted(folder.glob("*")) if folder.exists() else []


def assert_nothing_stored(tenant: Any) -> None:
    assert not Document.objects.filter(tenant=tenant).exists()
    assert not Task.objects.filter(tenant=tenant, kind=Task.Kind.DOCUMENT_INGESTION).exists()
    assert stored_files(tenant) == []


def test_upload_accepts_a_pdf_and_queues_its_ingestion(
    api: APIClient, user: User, tenant: Any, django_capture_on_commit_callbacks: Any
) -> None:
    data = make_pdf(known_pages())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = upload(api, data, "Quarterly Report.pdf")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["duplicate"] is False
    assert body["status"] == "pending"
    assert body["title"] == "Quarterly Report"
    assert body["original_filename"] == "Quarterly Report.pdf"
    assert body["size"] == len(data)
    assert body["page_count"] == 3
    assert body["owner"] == str(user.pk)
    import hashlib

    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    task = Task.objects.get(pk=body["task"]["id"])
    assert (task.kind, task.status, task.owner_id) == (Task.Kind.DOCUMENT_INGESTION, "pending", user.pk)
    assert task.payload == {"document_id": body["id"]}
    assert task.celery_task_id
    assert len(callbacks) == 1  # the Celery message goes out only when the transaction commits

    document = Document.objects.get(pk=body["id"])
    assert document.file.name == f"tenants/{tenant.pk}/documents/{document.pk}.pdf"
    assert Path(document.file.path).read_bytes() == data


def test_upload_with_title_and_project(api: APIClient, tenant: Any) -> None:
    project = api.post("/api/v1/projects/", {"name": "Finance"}, format="json").json()
    response = upload(api, make_pdf(["hello world"]), title="  My title ", project=project["id"])
    assert response.status_code == 202, response.content
    assert response.json()["title"] == "My title"
    assert response.json()["project"] == project["id"]


def test_upload_to_another_tenants_project_is_refused(
    api: APIClient, client_for: Any, other_user: User, tenant: Any
) -> None:
    foreign = client_for(other_user).post("/api/v1/projects/", {"name": "Theirs"}, format="json").json()
    response = upload(api, make_pdf(["hello world"]), project=foreign["id"])
    assert_envelope(response, 400, "validation_error")
    assert_nothing_stored(tenant)


def test_missing_file_is_400(api: APIClient, tenant: Any) -> None:
    assert_envelope(api.post(DOCUMENTS_URL, {"title": "x"}, format="multipart"), 400, "validation_error")
    assert_envelope(api.post(DOCUMENTS_URL, {"title": "x"}, format="json"), 400, "validation_error")
    assert_nothing_stored(tenant)


def test_empty_file_is_400(api: APIClient, tenant: Any) -> None:
    error = assert_envelope(upload(api, b"", "empty.pdf"), 400, "validation_error")
    assert "empty" in error["message"]
    assert_nothing_stored(tenant)


def test_png_renamed_to_pdf_is_415(api: APIClient, tenant: Any) -> None:
    error = assert_envelope(upload(api, png_bytes(), "picture.pdf"), 415, "unsupported_media_type")
    assert "not a PDF" in error["message"]
    assert_nothing_stored(tenant)


def test_text_file_claiming_to_be_a_pdf_is_415(api: APIClient, tenant: Any) -> None:
    """The PDF header must be in the first 1024 bytes; name and content type count for nothing."""
    data = b"just some notes " + b"x" * 1100 + b"%PDF-1.4 comes too late"
    assert_envelope(upload(api, data, "notes.pdf"), 415, "unsupported_media_type")
    assert_nothing_stored(tenant)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_pdf_is_422_pdf_invalid(api: APIClient, tenant: Any, keep: float) -> None:
    data = make_pdf(known_pages())
    assert_envelope(upload(api, data[: int(len(data) * keep)]), 422, "pdf_invalid")
    assert_nothing_stored(tenant)


def test_garbage_after_the_header_is_422_pdf_invalid(api: APIClient, tenant: Any) -> None:
    assert_envelope(upload(api, b"%PDF-1.7\n" + bytes(range(256)) * 20), 422, "pdf_invalid")
    assert_nothing_stored(tenant)


def test_password_protected_pdf_is_422_pdf_encrypted(api: APIClient, tenant: Any) -> None:
    data = encrypt_pdf(make_pdf(["secret plans"]), user_password="hunter2")
    error = assert_envelope(upload(api, data), 422, "pdf_encrypted")
    assert "password" in error["message"]
    assert_nothing_stored(tenant)


def test_encrypted_pdf_that_opens_with_an_empty_password_is_accepted(api: APIClient) -> None:
    data = encrypt_pdf(make_pdf(["owner-restricted but readable"]), user_password="")
    response = upload(api, data)
    assert response.status_code == 202, response.content


@pytest.mark.parametrize("extractor", ["pypdf", "pypdfium2"])
def test_more_than_max_pages_is_422(api: APIClient, tenant: Any, settings: Any, extractor: str) -> None:
    settings.PDF_EXTRACTOR = extractor
    error = assert_envelope(upload(api, make_blank_pdf(501)), 422, "pdf_too_many_pages")
    assert error["details"] == {"pages": 501, "max_pages": 500}
    assert_nothing_stored(tenant)


def test_exactly_max_pages_is_accepted(api: APIClient, settings: Any) -> None:
    settings.MAX_PDF_PAGES = 5
    assert upload(api, make_blank_pdf(5)).status_code == 202


def test_over_the_size_limit_is_413_from_content_length(api: APIClient, tenant: Any, settings: Any) -> None:
    settings.MAX_UPLOAD_MB = 1
    data = make_pdf(["big"]) + b"%" + b"0" * (1024 * 1024 + 70 * 1024)
    error = assert_envelope(upload(api, data), 413, "payload_too_large")
    assert error["details"] == {"max_upload_mb": 1}
    assert_nothing_stored(tenant)


def test_just_over_the_size_limit_is_413_after_parsing(api: APIClient, tenant: Any, settings: Any) -> None:
    """Within the multipart allowance for Content-Length, the file itself is still measured."""
    settings.MAX_UPLOAD_MB = 1
    base = make_pdf(["big"])
    data = base + b"%" + b"0" * (1024 * 1024 - len(base) + 10)
    assert_envelope(upload(api, data), 413, "payload_too_large")
    assert_nothing_stored(tenant)


def test_a_large_upload_is_streamed_to_a_temporary_file_and_accepted(api: APIClient, tenant: Any) -> None:
    """Over FILE_UPLOAD_MAX_MEMORY_SIZE (2 MB) the upload is on disk while it is checked."""
    data = make_pdf(known_pages()) + b"%" + b"0" * (3 * 1024 * 1024)  # trailing bytes after %%EOF are tolerated
    response = upload(api, data, "large.pdf")
    assert response.status_code == 202, response.content
    assert response.json()["size"] == len(data)
    assert stored_files(tenant)[0].stat().st_size == len(data)


def test_streaming_upload_handler_stops_at_the_limit() -> None:
    handler = MaxSizeUploadHandler(limit=100)
    assert handler.receive_data_chunk(b"x" * 60, 0) == b"x" * 60
    with pytest.raises(PayloadTooLarge):
        handler.receive_data_chunk(b"x" * 60, 60)
    with pytest.raises(PayloadTooLarge):
        MaxSizeUploadHandler(limit=100).handle_raw_input(None, {}, 10_000_000, b"b")


def test_same_bytes_again_return_the_existing_document(api: APIClient, tenant: Any, uploaded: Any) -> None:
    from tests.documents.conftest import ingest

    data = make_pdf(known_pages())
    first = uploaded(data)
    ingest(first)
    chunks = Chunk.objects.filter(document=first).count()

    response = upload(api, data, "copy-with-another-name.pdf", title="Another title")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["duplicate"] is True
    assert body["id"] == str(first.pk)
    assert body["title"] == first.title
    assert Document.objects.filter(tenant=tenant).count() == 1
    assert Task.objects.filter(tenant=tenant, kind=Task.Kind.DOCUMENT_INGESTION).count() == 1
    assert Chunk.objects.filter(document=first).count() == chunks
    assert len(stored_files(tenant)) == 1


def test_same_bytes_in_another_tenant_make_their_own_document(
    api: APIClient, client_for: Any, other_user: User, tenant: Any, other_tenant: Any
) -> None:
    data = make_pdf(known_pages())
    mine = upload(api, data)
    theirs = upload(client_for(other_user), data)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["id"] != theirs.json()["id"]
    assert theirs.json()["duplicate"] is False
    assert len(stored_files(tenant)) == len(stored_files(other_tenant)) == 1


def test_viewers_cannot_upload(client_for: Any, tenant: Any) -> None:
    viewer = UserFactory(tenant=tenant, role=User.Role.VIEWER)
    assert_envelope(upload(client_for(viewer), make_pdf(["x"])), 403, "permission_denied")
    assert_nothing_stored(tenant)


def test_upload_requires_authentication(anon_api: APIClient) -> None:
    assert_requires_auth(DOCUMENTS_URL, anon_api, verbs=("get", "post"))


def test_two_concurrent_uploads_of_the_same_bytes_make_one_document(
    transactional_db: Any, api: APIClient, user: User, tenant: Any
) -> None:
    """The race the pre-check cannot see: another upload of the same bytes inserts its row (not yet
    committed) after this request's duplicate lookup. This request's INSERT then waits on the unique
    index; when the other commits, the unique constraint turns into "that document", not a 500, and
    the loser's stored file is removed."""
    import hashlib
    import threading
    import time

    from django.db import connection, transaction

    data = make_pdf(known_pages())
    inserted, waited, done = threading.Event(), threading.Event(), threading.Event()
    winner: dict[str, Any] = {}

    def other_upload() -> None:
        try:
            with transaction.atomic():
                winner["doc"] = Document.objects.create(
                    tenant=tenant,
                    owner=user,
                    title="winner",
                    file=f"tenants/{tenant.pk}/documents/winner.pdf",
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
                inserted.set()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:  # until the API request waits on our row
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                        if cursor.fetchone()[0]:
                            waited.set()
                            break
                    time.sleep(0.05)
        finally:
            connection.close()
            done.set()

    thread = threading.Thread(target=other_upload)
    thread.start()
    assert inserted.wait(20)
    response = upload(api, data, "same-bytes.pdf")
    thread.join(30)
    assert done.is_set()

    assert waited.is_set(), "the request never waited on the unique index: the race was not exercised"
    assert response.status_code == 200, response.content[:500]
    body = response.json()
    assert body["duplicate"] is True
    assert body["id"] == str(winner["doc"].pk)
    assert Document.objects.filter(tenant=tenant).count() == 1
    assert not Task.objects.filter(tenant=tenant, kind=Task.Kind.DOCUMENT_INGESTION).exists()
    assert stored_files(tenant) == []  # the loser's file is gone (the winner here stored none)
