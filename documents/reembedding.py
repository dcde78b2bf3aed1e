"""Moving a tenant to another embedder: re-embed every chunk in the background, then switch at once.

A tenant's searches read only its active embedder's vectors (its ``embedder`` setting). To move it,
:func:`reembed_start` queues a ``reembedding`` task row (``manage.py reembed``, the tenant admin's
"Re-embed" actions); the worker runs :func:`tenant_reembed`:

1. *Fill*: the chunks that have no vector of the new embedder yet are embedded in batches of
   ``REEMBED_BATCH`` and their vectors added beside the old ones (``ChunkEmbedding`` rows of the new
   model). Progress goes to the task row (5-95, stage ``embedding``); every batch is a cancel
   checkpoint. The old vectors keep answering every search meanwhile. A cancelled or crashed run
   leaves the vectors it made, and the next run only embeds what is still missing.
2. *Switch*: in one transaction holding the tenant row ``FOR UPDATE``, the chunks still missing a
   new vector (documents ingested during the fill) are embedded, then the setting changes and the
   documents record the new embedder. Ingestion's store step reads the active embedder under a share
   lock on the same row (:func:`documents.chunkstore.active_embedder_locked`), so a document is
   stored either before the switch (and filled here) or after it (with the new embedder's vectors):
   no chunk is ever left without a vector of the active embedder.
3. *Clean up*: after the commit, the tenant's vectors of other embedders are deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from accounts.models import User
from config.errors import Conflict, ValidationFailed
from documents.embedding_base import Embedder
from documents.embeddings import PROVIDERS, get_embedder, tenant_embedder_name, vector_literal
from documents.models import Chunk, ChunkEmbedding, Document
from documents.vectors import ensure_index
from tasks.models import Task
from tasks.tracking import report_progress
from tenants.models import Tenant
from tenants.usage import usage_record

logger = logging.getLogger(__name__)

ACTIVE = (Task.Status.PENDING, Task.Status.PROCESSING)


def _owner_for(tenant: Tenant) -> User:
    """Who the task row belongs to (and whose sockets get its progress): the tenant's oldest active admin."""
    owner = User.objects.filter(tenant=tenant, is_active=True, role=User.Role.ADMIN).order_by("created_at").first()
    if owner is None:
        raise ValidationFailed(f"Tenant {tenant.slug!r} has no active admin to own the re-embedding task.")
    return owner


def reembed_start(*, tenant: Tenant, embedder: str, owner: User | None = None, enqueue: bool = True) -> Task:
    """Queue the move of ``tenant`` to ``embedder`` (``local``, ``openai`` or ``hashing``); returns the task row
    (``enqueue=False``: the row only, for a caller that runs :func:`tenant_reembed` itself).

    Raises ``ValidationFailed`` for an unknown or unusable embedder (openai without a key) and
    ``Conflict`` while another re-embedding of the tenant is pending or running.
    """
    from documents.tasks import reembed_tenant
    from tasks.services import task_create_background, task_enqueue

    name = _checked(embedder)
    with transaction.atomic():
        Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
        running = Task.objects.filter(tenant=tenant, kind=Task.Kind.REEMBEDDING, status__in=ACTIVE).first()
        if running is not None:
            raise Conflict(
                f"Tenant {tenant.slug!r} is already being re-embedded (task {running.pk}).",
                details={"task_id": str(running.pk)},
            )
        task = task_create_background(
            tenant=tenant,
            owner=owner or _owner_for(tenant),
            kind=Task.Kind.REEMBEDDING,
            title=f"Re-embed every chunk with the {name} embedder",
            celery_task=reembed_tenant,
            payload={"tenant_id": str(tenant.pk), "embedder": name},
        )
        if enqueue:
            task_enqueue(task=task, celery_task=reembed_tenant, kwargs=task.payload)
    return task


def _checked(name: str) -> str:
    name = (name or "").strip().lower()
    if name not in PROVIDERS:
        raise ValidationFailed(f"Unknown embedder {name!r}: use one of {', '.join(PROVIDERS)}.")
    try:
        get_embedder(name)
    except Exception as exc:  # e.g. openai without OPENAI_API_KEY
        raise ValidationFailed(f"The {name} embedder cannot be used here: {exc}") from exc
    return name


def _missing(tenant_id: Any, embedder: Embedder, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` of the tenant's chunks without a vector of ``embedder`` (oldest first)."""
    return list(
        Chunk.objects.filter(tenant_id=tenant_id)
        .exclude(embeddings__model=embedder.model, embeddings__dimensions=embedder.dimensions)
        .order_by("id")
        .values_list("id", "text")[:limit]
    )


def _store(tenant_id: Any, embedder: Embedder, rows: list[tuple[int, str]]) -> int:
    """Embed ``rows`` and add their vectors; chunks deleted meanwhile (a document re-ingested) are skipped."""
    if not rows:
        return 0
    result = embedder.embed([text for _, text in rows])
    if embedder.metered:
        usage_record(
            tenant=Tenant.objects.get(pk=tenant_id),
            user=None,
            kind="embedding",
            model=embedder.model,
            embedding_tokens=result.tokens,
        )
    ids = [chunk_id for chunk_id, _ in rows]
    literals = [vector_literal(vector) for vector in result.vectors]
    sql = f"""
        INSERT INTO {ChunkEmbedding._meta.db_table} (chunk_id, tenant_id, model, dimensions, embedding)
        SELECT c.id, c.tenant_id, %s, %s, v.embedding::halfvec
        FROM unnest(%s::bigint[], %s::text[]) AS v(chunk_id, embedding)
        JOIN {Chunk._meta.db_table} c ON c.id = v.chunk_id AND c.tenant_id = %s
        ON CONFLICT DO NOTHING
    """
    for attempt in range(3):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql, [embedder.model, embedder.dimensions, ids, literals, tenant_id])
                return cursor.rowcount
        except IntegrityError:  # a chunk went away between the read and the insert: the rest again
            if attempt == 2:
                raise
    return 0


def tenant_reembed(
    *,
    tenant_id: Any,
    embedder: str,
    task_row_id: str | None = None,
    batch: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fill, switch, clean up (see the module docstring). ``on_batch(done, total)`` runs after each batch.

    Returns ``{"embedder", "model", "dimensions", "embedded", "chunks", "removed"}`` for the task row.
    """
    name = _checked(embedder)
    target = get_embedder(name)
    batch = max(1, batch or settings.REEMBED_BATCH)
    ensure_index(target.model, target.dimensions)
    total = Chunk.objects.filter(tenant_id=tenant_id).count()
    already = total - len(_missing(tenant_id, target, total + 1)) if total else 0
    done, embedded = already, 0
    report_progress(task_row_id, progress=5, stage="embedding")
    while rows := _missing(tenant_id, target, batch):
        embedded += _store(tenant_id, target, rows)
        done = min(total, done + len(rows))
        report_progress(task_row_id, progress=5 + int(90 * done / max(total, 1)), stage="embedding")
        if on_batch is not None:
            on_batch(done, total)

    report_progress(task_row_id, progress=96, stage="switching")
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant_id)
        # Documents stored during the fill (ingestion waits for this lock now): embed them too.
        while rows := _missing(tenant_id, target, batch):
            embedded += _store(tenant_id, target, rows)
        previous = tenant_embedder_name(tenant)
        tenant.settings = {**(tenant.settings or {}), "embedder": name}
        tenant.save(update_fields=["settings", "updated_at"])
        Document.objects.filter(tenant_id=tenant_id, status=Document.Status.READY).update(
            embedding_model=target.model, embedding_dimensions=target.dimensions
        )
    removed, _ = (
        ChunkEmbedding.objects.filter(tenant_id=tenant_id)
        .exclude(model=target.model, dimensions=target.dimensions)
        .delete()
    )
    result = {
        "embedder": name,
        "previous": previous,
        "model": target.model,
        "dimensions": target.dimensions,
        "chunks": Chunk.objects.filter(tenant_id=tenant_id).count(),
        "embedded": embedded,
        "removed": removed,
    }
    logger.info("tenant_reembedded", extra={"tenant_id": str(tenant_id), **result})
    return result
