"""Projects (workspaces), documents (uploaded PDFs) and their chunks (text + pgvector embedding)."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import HalfVectorField

from tenants.models import Tenant, TenantOwnedModel

# The text search configuration: 'simple' lower-cases and splits without stemming or stop words,
# so Persian, Arabic and any other language index as well as English.
TS_CONFIG = "simple"


def default_settings() -> dict[str, Any]:
    return {}


class Project(TenantOwnedModel):
    """A workspace grouping documents; it scopes search and chat."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    settings = models.JSONField(default=default_settings, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="documents_project_unique_tenant_name"),
        ]

    def __str__(self) -> str:
        return self.name


def document_upload_to(instance: Document, filename: str) -> str:
    """``tenants/<tenant id>/documents/<document id>.pdf``: one folder per tenant, no user-chosen names."""
    return f"tenants/{instance.tenant_id}/documents/{instance.id}.pdf"


class Document(TenantOwnedModel):
    """An uploaded PDF and its lifecycle.

    ``status`` is the lifecycle search and the API need; the progress, stage, error and timings of
    an ingestion live on its task row (``task``, the one record of the run; see
    :mod:`documents.ingestion`). The status is written only at these transitions (the pipeline and
    the services make only these moves; :meth:`can_transition`)::

        pending    -> processing | failed          (a worker picks it up / it cannot be queued)
        processing -> ready | failed | pending     (done / typed error or cancel / redelivered or retried)
        ready      -> pending                      (reprocess)
        failed     -> pending | processing         (reprocess / the ledger's retry runs the same task row)

    Only ``ready`` documents are searched. Chunks are replaced as a whole in the transaction that
    makes a document ``ready``, so a redelivered task never duplicates them.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    TRANSITIONS: ClassVar[dict[str, set[str]]] = {
        Status.PENDING: {Status.PROCESSING, Status.FAILED},
        Status.PROCESSING: {Status.READY, Status.FAILED, Status.PENDING},
        Status.READY: {Status.PENDING},
        Status.FAILED: {Status.PENDING, Status.PROCESSING},
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents")
    title = models.CharField(max_length=255)
    file = models.FileField(upload_to=document_upload_to, max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, default="application/pdf")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    page_count = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    embedding_model = models.CharField(max_length=100, blank=True)
    embedding_dimensions = models.PositiveIntegerField(default=0)
    # The pages read by OCR (no text layer), page number → the OCR confidence (0–1; null: no text found).
    ocr_pages = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "sha256"], name="documents_document_unique_tenant_sha256"),
        ]
        indexes = [
            models.Index(fields=["tenant", "status"], name="documents_doc_tenant_status"),
            models.Index(fields=["tenant", "project", "status"], name="documents_doc_tenant_project"),
        ]

    def __str__(self) -> str:
        return self.title

    @classmethod
    def can_transition(cls, old: str, new: str) -> bool:
        return old == new or new in cls.TRANSITIONS.get(old, set())


class Chunk(models.Model):
    """A window of a document's text with its page range, offsets and page breaks.

    ``search_vector`` is generated by PostgreSQL from ``text`` (config ``simple``), GIN-indexed
    together with the tenant. ``page_breaks`` lists ``[offset, page]`` for every page that starts
    inside the chunk (``offset`` into ``text``), so that a span of the text can name its own pages
    (:meth:`pages_of_span`); chunks stored before it existed have None and cite their whole range.
    The vectors are in :class:`ChunkEmbedding`, one per embedder.
    ``source`` says where the text came from: the PDF's text layer, or OCR when any of the chunk's
    pages was a scan (``ocr_confidence``: the lowest confidence of those pages).
    """

    class Source(models.TextChoices):
        TEXT = "text", "Text layer"
        OCR = "ocr", "OCR"

    # Not a TenantOwnedModel: the tenant column carries no B-tree of its own, so that the planner
    # does not trade the HNSW index for a tenant scan + exact sort (see documents.search).
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()
    page_start = models.PositiveIntegerField()
    page_end = models.PositiveIntegerField()
    token_count = models.PositiveIntegerField()
    char_start = models.PositiveIntegerField()
    char_end = models.PositiveIntegerField()
    page_breaks = models.JSONField(default=list, blank=True, null=True)  # None: unknown (older chunks)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.TEXT)
    ocr_confidence = models.FloatField(null=True, blank=True)
    search_vector = models.GeneratedField(
        expression=SearchVector("text", config=TS_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document", "index"]
        constraints = [
            models.UniqueConstraint(fields=["document", "index"], name="documents_chunk_unique_document_index"),
        ]
        indexes = [
            # Tenant first (btree_gin): a keyword search reads only its own tenant's postings.
            GinIndex(fields=["tenant", "search_vector"], name="documents_chunk_search_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.index}"

    def pages_of_span(self, start: int, end: int) -> tuple[int, int]:
        """The first and last page of ``text[start:end]``."""
        from documents.chunking import pages_of_span

        return pages_of_span(self.page_start, self.page_end, self.page_breaks, start, end)


class ChunkEmbedding(models.Model):
    """One embedder's vector of a chunk.

    ``embedding`` is an untyped ``halfvec``: each vector keeps its embedder's width (no padding), and
    each (``model``, ``dimensions``) has its own partial HNSW index on ``embedding::halfvec(n)``,
    made by :func:`documents.vectors.ensure_index` (not declared here: the set of embedders is
    configuration). A tenant's searches read only its active embedder's rows; while it re-embeds,
    the new embedder's rows are added beside the old ones, which answer until the switch.
    """

    # No B-trees on chunk or tenant alone: the unique (chunk, model, dimensions) serves the chunk
    # lookups, and a tenant B-tree would tempt the planner away from the HNSW scan.
    chunk = models.ForeignKey(Chunk, on_delete=models.CASCADE, related_name="embeddings", db_index=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", db_index=False)
    model = models.CharField(max_length=100)
    dimensions = models.PositiveIntegerField()
    embedding = HalfVectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["chunk", "model", "dimensions"], name="documents_chunkembedding_unique_chunk_model"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chunk_id}:{self.model}/{self.dimensions}"
