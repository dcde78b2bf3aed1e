"""The chunk store: a document's chunks and their vectors written with COPY, inside the caller's
transaction (the ingestion's store step, the test and benchmark seeders).

Chunks and vectors are separate rows (one ``ChunkEmbedding`` per chunk and embedder); a write of one
embedder's vectors makes sure that embedder's partial HNSW index exists first
(:func:`documents.vectors.ensure_index`). :func:`active_embedder_locked` reads a tenant's embedder under
a share lock, so a switch of embedder and a store cannot interleave. Each chunk records where its
text came from (:func:`chunk_source`: the text layer, or OCR of a scanned page).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection

from documents.chunking import ChunkData
from documents.embedding_base import Embedder, EmbeddingError
from documents.embeddings import tenant_embedder_name, vector_literal
from documents.models import Chunk, ChunkEmbedding, Document
from documents.vectors import ensure_index


def chunk_source(chunk: ChunkData, ocr_pages: dict[int, float | None]) -> tuple[str, float | None]:
    """``("ocr", lowest confidence)`` when any page of the chunk was read by OCR, else ``("text", None)``."""
    confidences = [ocr_pages[n] for n in range(chunk.page_start, chunk.page_end + 1) if n in ocr_pages]
    if not confidences:
        return "text", None
    known = [c for c in confidences if c is not None]
    return "ocr", (min(known) if known else None)


def chunks_replace(
    *,
    document: Document,
    chunks: Sequence[ChunkData],
    vectors: Sequence[Sequence[float]],
    embedder: Embedder,
    ocr_pages: dict[int, float | None] | None = None,
    on_stage: Callable[[str, float], None] | None = None,
) -> int:
    """Replace the document's chunks and their ``embedder`` vectors (delete + COPY) inside the caller's
    transaction.

    ``ocr_pages`` (page → OCR confidence) gives each chunk its ``source`` (:func:`chunk_source`).
    ``on_stage(stage, seconds)`` hears the seconds of the chunk rows (``store``: text, page breaks,
    the full-text index) and of the vectors (``index``: the embedder's HNSW index).
    """
    ensure_index(embedder.model, embedder.dimensions)
    started = time.monotonic()
    Chunk.objects.filter(document_id=document.pk).delete()
    ocr_pages = ocr_pages or {}
    columns = (
        "tenant_id, document_id, index, text, page_start, page_end, token_count, char_start, char_end, page_breaks, "
        "source, ocr_confidence"
    )
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {Chunk._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        for chunk in chunks:
            source, confidence = chunk_source(chunk, ocr_pages)
            copy.write_row(
                (
                    str(document.tenant_id),
                    str(document.pk),
                    chunk.index,
                    chunk.text,
                    chunk.page_start,
                    chunk.page_end,
                    chunk.token_count,
                    chunk.char_start,
                    chunk.char_end,
                    json.dumps([list(pair) for pair in chunk.page_breaks]),
                    source,
                    confidence,
                )
            )
    ids = dict(Chunk.objects.filter(document_id=document.pk).values_list("index", "id"))
    stored = time.monotonic()
    embeddings_store(
        tenant_id=document.tenant_id,
        rows=[(ids[chunk.index], vector) for chunk, vector in zip(chunks, vectors, strict=True)],
        model=embedder.model,
        dimensions=embedder.dimensions,
    )
    if on_stage is not None:
        on_stage("store", stored - started)
        on_stage("index", time.monotonic() - stored)
    return len(chunks)


def embeddings_store(
    *, tenant_id: Any, rows: Sequence[tuple[int, Sequence[float]]], model: str, dimensions: int
) -> int:
    """COPY ``(chunk id, vector)`` rows of one embedder (the caller makes sure none exist yet)."""
    columns = "chunk_id, tenant_id, model, dimensions, embedding"
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {ChunkEmbedding._meta.db_table} ({columns}) FROM STDIN") as copy,
    ):
        for chunk_id, vector in rows:
            if len(vector) != dimensions:
                raise EmbeddingError(f"A {len(vector)}-dimension vector from a {dimensions}-dimension embedder.")
            copy.write_row((chunk_id, str(tenant_id), model, dimensions, vector_literal(vector)))
    return len(rows)


def active_embedder_locked(tenant_id: Any) -> str:
    """The tenant's active embedder, read under a share lock on its row held until commit: a switch
    (which locks the row for update) waits for this transaction, and this one for the switch."""
    from tenants.models import Tenant

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {Tenant._meta.db_table} WHERE id = %s FOR SHARE", [tenant_id])
    return tenant_embedder_name(Tenant.objects.get(pk=tenant_id))
