"""Moving a tenant to another embedder: background fill, no gap in search, atomic switch, clean-up."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from config.errors import Conflict, ValidationFailed
from documents.embeddings import tenant_embedder_name
from documents.local_embedder import LOCAL_MODEL
from documents.models import Chunk, ChunkEmbedding, Document
from documents.reembedding import reembed_start, tenant_reembed
from documents.search import search_chunks
from tasks.models import Task
from tests.documents.conftest import ingest
from tests.documents.pdfs import make_pdf

PAGES = [
    "Employees are entitled to twenty-five days of paid annual leave per calendar year. " * 3,
    "The server room is cooled to eighteen degrees and its door stays locked at night. " * 3,
    "Expense claims are reimbursed with the next salary payment after approval. " * 3,
]
PARAPHRASE = "How much holiday time do workers get?"


def vectors_of(tenant: Any) -> set[tuple[str, int]]:
    return set(ChunkEmbedding.objects.filter(tenant=tenant).values_list("model", "dimensions").distinct())


@pytest.fixture
def hashing_tenant(tenant: Any, ready_document: Any, settings: Any) -> Any:
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 40, 5
    tenant.settings = {"embedder": "hashing"}
    tenant.save(update_fields=["settings"])
    ready_document(make_pdf(PAGES), "handbook.pdf")
    assert vectors_of(tenant) == {("hashing-v1", settings.EMBEDDING_DIMENSIONS)}
    return tenant


def test_old_vectors_answer_until_the_new_set_is_complete_then_the_switch_is_atomic(
    hashing_tenant: Any, uploaded: Any, settings: Any
) -> None:
    tenant = hashing_tenant
    total = Chunk.objects.filter(tenant=tenant).count()
    assert total >= 4
    during: list[tuple[str, int, set[str]]] = []
    late: list[Document] = []

    def on_batch(done: int, total: int) -> None:
        tenant.refresh_from_db()
        hits = search_chunks(tenant=tenant, query="paid annual leave", mode="semantic", top_k=3)
        during.append((tenant_embedder_name(tenant), len(hits), {h.document_id.hex for h in hits}))
        if not late:  # a document ingested mid-way is stored with the still active (old) embedder...
            document = uploaded(make_pdf(["Parking permits cost ten euros a month at the main office."]), "late.pdf")
            ingest(document)
            late.append(document)

    result = tenant_reembed(tenant_id=tenant.pk, embedder="local", batch=2, on_batch=on_batch)

    assert len(during) >= 2
    assert all(name == "hashing" and count > 0 for name, count, _ in during)  # no gap: the old set answered
    tenant.refresh_from_db()
    assert tenant_embedder_name(tenant) == "local"
    # ...and still got its new vectors before the switch; the old vectors are gone afterwards
    assert vectors_of(tenant) == {(LOCAL_MODEL, 384)}
    assert ChunkEmbedding.objects.filter(tenant=tenant).count() == Chunk.objects.filter(tenant=tenant).count()
    assert result["removed"] == Chunk.objects.filter(tenant=tenant).count()
    assert set(Document.objects.filter(tenant=tenant).values_list("embedding_model", flat=True)) == {LOCAL_MODEL}
    hits = search_chunks(tenant=tenant, query=PARAPHRASE, mode="semantic", top_k=1)
    assert hits and hits[0].page_start == 1  # the paraphrase now finds its page
    late_hits = search_chunks(tenant=tenant, query="What does a car park pass cost?", mode="semantic", top_k=1)
    assert late_hits[0].document_id == late[0].pk


def test_a_run_resumes_from_what_an_interrupted_one_embedded(hashing_tenant: Any) -> None:
    tenant = hashing_tenant
    calls: list[int] = []

    class Stop(Exception):
        pass

    def stop_after_first(done: int, total: int) -> None:
        calls.append(done)
        raise Stop

    with pytest.raises(Stop):
        tenant_reembed(tenant_id=tenant.pk, embedder="local", batch=2, on_batch=stop_after_first)
    tenant.refresh_from_db()
    assert tenant_embedder_name(tenant) == "hashing"  # not switched: searches still use hashing
    assert ChunkEmbedding.objects.filter(tenant=tenant, model=LOCAL_MODEL).count() == 2
    assert search_chunks(tenant=tenant, query="paid annual leave", mode="semantic")
    result = tenant_reembed(tenant_id=tenant.pk, embedder="local", batch=50)
    assert result["embedded"] == Chunk.objects.filter(tenant=tenant).count() - 2  # only what was missing


def test_ingestion_that_outlives_a_switch_stores_the_new_embedders_vectors(hashing_tenant: Any, uploaded: Any) -> None:
    """Embedded with hashing, stored after the tenant switched to local: stored with local vectors."""
    from documents.ingestion import document_ingest
    from documents.ingestion_progress import progress_listener

    tenant = hashing_tenant
    document = uploaded(make_pdf(["Bees tell their sisters where flowers are with a waggle dance."]), "bees.pdf")

    def switch_before_storing(progress: int, stage: str) -> None:
        if stage == "storing":
            tenant_reembed(tenant_id=tenant.pk, embedder="local")

    with progress_listener(switch_before_storing):
        document_ingest(document_id=str(document.pk), task_row_id=str(document.task_id))
    assert set(ChunkEmbedding.objects.filter(chunk__document=document).values_list("model", flat=True)) == {LOCAL_MODEL}
    document.refresh_from_db()
    assert document.embedding_model == LOCAL_MODEL
    assert search_chunks(tenant=tenant, query="How do bees communicate?", mode="semantic", top_k=1)[0].document_id == (
        document.pk
    )


def test_start_queues_one_task_row_and_refuses_a_second(hashing_tenant: Any, admin_user: Any) -> None:
    task = reembed_start(tenant=hashing_tenant, embedder="local")
    assert (task.kind, task.payload, task.owner_id) == (
        Task.Kind.REEMBEDDING,
        {"tenant_id": str(hashing_tenant.pk), "embedder": "local"},
        admin_user.pk,
    )
    assert task.celery_task_id  # enqueued (sent once the transaction commits)
    with pytest.raises(Conflict):
        reembed_start(tenant=hashing_tenant, embedder="hashing")
    with pytest.raises(ValidationFailed, match="Unknown embedder"):
        reembed_start(tenant=hashing_tenant, embedder="word2vec")


def test_openai_needs_a_key(hashing_tenant: Any, admin_user: Any, settings: Any) -> None:
    settings.OPENAI_API_KEY = ""
    with pytest.raises(ValidationFailed, match="OPENAI_API_KEY"):
        reembed_start(tenant=hashing_tenant, embedder="openai")


def test_the_command_runs_now_and_reports(hashing_tenant: Any, admin_user: Any) -> None:
    out = StringIO()
    call_command("reembed", hashing_tenant.slug, "local", "--now", stdout=out)
    assert "now searches with local" in out.getvalue()
    task = Task.objects.get(tenant=hashing_tenant, kind=Task.Kind.REEMBEDDING)
    assert (task.status, task.progress, task.result["embedder"]) == (Task.Status.COMPLETED, 100, "local")
    status = StringIO()
    call_command("reembed", hashing_tenant.slug, "--status", stdout=status)
    assert "embedder local" in status.getvalue() and "completed" in status.getvalue()
    with pytest.raises(CommandError, match="No tenant"):
        call_command("reembed", "nope", "local")
    with pytest.raises(CommandError):
        call_command("reembed", hashing_tenant.slug, "word2vec")


def test_the_admin_action_queues_a_reembedding(hashing_tenant: Any, admin_user: Any) -> None:
    from django.test import Client

    from accounts.models import User

    admin_client = Client()
    admin_client.force_login(User.objects.create_superuser("ops@documind.test", "an-operator-password-42"))
    response = admin_client.post(
        "/admin/tenants/tenant/",
        {"action": "reembed_local", "_selected_action": [str(hashing_tenant.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    task = Task.objects.get(tenant=hashing_tenant, kind=Task.Kind.REEMBEDDING)
    assert task.payload["embedder"] == "local" and task.status == Task.Status.PENDING
    assert b"queued" in response.content.lower()


def test_tenant_admins_cannot_flip_the_embedder_without_reembedding(admin_api: Any, tenant: Any) -> None:
    response = admin_api.patch("/api/v1/tenant/", {"settings": {"embedder": "local"}}, format="json")
    assert response.status_code == 400
    assert "reembed" in str(response.json()["error"]).lower()


def test_new_tenants_get_the_local_embedder_offline(settings: Any, db: Any) -> None:
    from tenants.services import tenant_create

    settings.EMBEDDING_PROVIDER, settings.OPENAI_API_KEY = "auto", ""
    tenant, _ = tenant_create(slug="fresh", name="Fresh")
    assert tenant.settings["embedder"] == "local"
    settings.OPENAI_API_KEY = "sk-test"
    assert tenant_embedder_name(tenant) == "local"  # pinned: a key added later does not strand its vectors
