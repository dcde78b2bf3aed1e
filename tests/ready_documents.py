"""Chunks for a document without a PDF or a worker: its pages through the real chunker, embedder and
chunk store (the chat tests' ready documents and the chat benchmark's seed).

Import it once Django is set up.
"""

from __future__ import annotations

import dataclasses

from documents.chunking import chunk_pages
from documents.chunkstore import chunks_replace
from documents.embeddings import tenant_embedder
from documents.extraction import PageText
from documents.models import Document


def store_page_chunks(document: Document, pages: list[str], *, chunk_tokens: int = 400) -> int:
    """Replace ``document``'s chunks with those of ``pages`` and record the count and embedding model.

    Chunked page by page (the real chunker), so that every chunk's page range is exact; the overlap is
    a tenth of ``chunk_tokens``. Run it inside the caller's transaction. Returns the number of chunks.
    """
    chunks = []
    for number, text in enumerate(pages, start=1):
        for chunk in chunk_pages([PageText(number, text)], chunk_tokens=chunk_tokens, overlap=chunk_tokens // 10):
            chunks.append(dataclasses.replace(chunk, index=len(chunks)))
    embedder = tenant_embedder(document.tenant)
    vectors = embedder.embed([c.text for c in chunks]).vectors
    count = chunks_replace(document=document, chunks=chunks, vectors=vectors, embedder=embedder)
    Document.objects.filter(pk=document.pk).update(
        chunk_count=count, embedding_model=embedder.model, embedding_dimensions=embedder.dimensions
    )
    return count
