"""Writes of the documents app: projects, uploads, edits, deletion and reprocessing."""

from __future__ import annotations

import logging
import uuid
from pathlib import PurePath
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from audit.services import audit_record
from config.errors import Conflict
from documents.models import Document, Project
from documents.uploads import check_pdf_upload
from integrations.webhooks import announce_document
from tasks.ledger import publish_row
from tasks.models import Task
from tasks.services import task_cancel, task_create_background, task_enqueue
from tenants.models import Tenant

logger = logging.getLogger(__name__)

ACTIVE_TASK_STATUSES = (Task.Status.PENDING, Task.Status.PROCESSING)


# --- projects ---------------------------------------------------------------------------------


def _project_name_taken(name: str) -> Conflict:
    return Conflict(f"A project named {name!r} already exists.", details={"fields": {"name": ["Already in use."]}})


def project_create(
    *, tenant: Tenant, name: str, description: str = "", settings: dict[str, Any] | None = None
) -> Project:
    """A new project; a name already used in the tenant is a 409."""
    try:
        with transaction.atomic():
            return Project.objects.create(tenant=tenant, name=name, description=description, settings=settings or {})
    except IntegrityError as exc:
        raise _project_name_taken(name) from exc


def project_update(*, project: Project, **fields: Any) -> Project:
    """Change name, description or settings; a name already used in the tenant is a 409."""
    for key in ("name", "description", "settings"):
        if key in fields:
            setattr(project, key, fields[key])
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError as exc:
        raise _project_name_taken(project.name) from exc
    return project


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete the project; its documents stay, without a project."""
    project.delete()


# --- documents --------------------------------------------------------------------------------


def _default_title(filename: str) -> str:
    stem = PurePath(filename or "").stem.strip()
    return (stem or "Untitled document")[:255]


def _enqueue_ingestion(document: Document, owner: User, *, enqueue: bool = True) -> Task:
    """A ledger row for the document's ingestion, enqueued when the transaction commits (if ``enqueue``)."""
    from documents.tasks import ingest_document

    task = task_create_background(
        tenant=document.tenant,
        owner=owner,
        kind=Task.Kind.DOCUMENT_INGESTION,
        title=f"Ingest {document.title}",
        celery_task=ingest_document,
        payload={"document_id": str(document.pk)},
    )
    document.task = task
    Document.objects.filter(pk=document.pk).update(task=task)
    if enqueue:
        task_enqueue(task=task, celery_task=ingest_document, kwargs={"document_id": str(document.pk)})
    return task


def document_upload(
    *,
    tenant: Tenant,
    owner: User,
    upload: UploadedFile | None,
    title: str | None = None,
    project: Project | None = None,
    enqueue: bool = True,
) -> tuple[Document, bool]:
    """Check and store an uploaded PDF and queue its ingestion. Returns ``(document, duplicate)``.

    ``enqueue=False`` creates the ledger row without sending it to Celery (``manage.py ingest``
    runs the task in-process through Celery's ``apply``).

    Every refusal (see :mod:`documents.uploads`) happens before anything is stored. The same bytes
    already uploaded in this tenant return the existing document with ``duplicate=True`` (also
    when two identical uploads race: the unique constraint decides, and the loser's file is removed).
    """
    checked = check_pdf_upload(upload)
    assert upload is not None
    existing = Document.objects.for_tenant(tenant).filter(sha256=checked.sha256).select_related("task").first()
    if existing is not None:
        return existing, True

    document = Document(
        id=uuid.uuid4(),
        tenant=tenant,
        owner=owner,
        project=project,
        title=(title or "").strip()[:255] or _default_title(upload.name or ""),
        original_filename=(upload.name or "document.pdf")[:255],
        content_type="application/pdf",
        size=checked.size,
        sha256=checked.sha256,
        page_count=checked.page_count,
        status=Document.Status.PENDING,
    )
    upload.seek(0)
    document.file.save(f"{document.id}.pdf", upload, save=False)
    try:
        with transaction.atomic():
            document.save(force_insert=True)
            _enqueue_ingestion(document, owner, enqueue=enqueue)
    except IntegrityError:
        document.file.delete(save=False)
        existing = Document.objects.for_tenant(tenant).filter(sha256=checked.sha256).select_related("task").first()
        if existing is None:
            raise
        return existing, True
    except BaseException:
        document.file.delete(save=False)
        raise
    return document, False


@transaction.atomic
def document_update(*, document: Document, **fields: Any) -> Document:
    """Change the title and/or the project (None: no project)."""
    update_fields = ["updated_at"]
    if "title" in fields:
        document.title = fields["title"].strip()[:255] or document.title
        update_fields.append("title")
    if "project" in fields:
        document.project = fields["project"]
        update_fields.append("project")
    document.save(update_fields=update_fields)
    return document


def _cancel_active_task(document: Document) -> None:
    task = Task.objects.filter(pk=document.task_id).first() if document.task_id else None
    if task is not None and task.status in ACTIVE_TASK_STATUSES:
        task_cancel(task=task)


@transaction.atomic
def document_delete(*, document: Document) -> None:
    """Delete the document, its chunks and its file at once; a running ingestion is cancelled.

    The row lock waits for a worker that is storing chunks right now; the worker then finds the
    document gone and stops. The file is removed from storage when the transaction commits
    (:mod:`documents.signals`, which also covers documents deleted by cascade).
    """
    locked = Document.objects.select_for_update().filter(pk=document.pk).first()
    if locked is None:
        return
    _cancel_active_task(locked)
    audit_record(action="document.deleted", tenant=locked.tenant, target=locked, details={"sha256": locked.sha256})
    locked.delete()


@transaction.atomic
def document_reprocess(*, document: Document, user: User) -> Document:
    """Ingest the document again under a new ledger row; 409 while its ingestion task is still running.

    The task row alone says whether an ingestion runs (it is the one record of the run).
    """
    locked = Document.objects.select_for_update().get(pk=document.pk)
    task = Task.objects.select_for_update().filter(pk=locked.task_id).first() if locked.task_id else None
    if task is not None and task.status in ACTIVE_TASK_STATUSES:
        raise Conflict("The document is already being processed.", details={"status": locked.status})
    if not Document.can_transition(locked.status, Document.Status.PENDING):
        raise Conflict(f"A {locked.status} document cannot be reprocessed.", details={"status": locked.status})
    locked.status = Document.Status.PENDING
    locked.save(update_fields=["status", "updated_at"])
    new_task = _enqueue_ingestion(locked, user)
    transaction.on_commit(lambda: publish_row(new_task))
    return locked


# --- lifecycle transitions the task ledger asks for (documents.tasks.IngestionTask) -------------


@transaction.atomic
def document_ingestion_abandoned(*, task: Task) -> None:
    """Fail the document whose ingestion row ended outside the worker (its error is the row's).

    A task cancelled before any worker picked it up, or failed by the watchdog as stalled, would
    otherwise leave its document ``pending`` or ``processing`` forever. Only the document whose
    current task is ``task`` and that is still unfinished is touched.
    """
    from documents.ingestion_progress import ingestion_error

    unfinished = [Document.Status.PENDING, Document.Status.PROCESSING]
    for document in Document.objects.select_related("tenant").filter(task_id=task.pk, status__in=unfinished):
        # The status condition again in the UPDATE: a run finishing meanwhile keeps its outcome.
        if Document.objects.filter(pk=document.pk, status__in=unfinished).update(
            status=Document.Status.FAILED, updated_at=timezone.now()
        ):
            document.status = Document.Status.FAILED
            announce_document(document, error=ingestion_error(task))  # document.failed, after commit


@transaction.atomic
def document_ingestion_requeued(*, task: Task) -> None:
    """The ledger's retry queued ``task`` again: its document, if it is the document's current task
    and has failed, is ``pending`` again (inside the retry's transaction)."""
    Document.objects.filter(task_id=task.pk, status=Document.Status.FAILED).update(
        status=Document.Status.PENDING, updated_at=timezone.now()
    )
