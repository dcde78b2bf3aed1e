"""A hybrid search fuses each retriever's list cut at the search's depth (``max(2 * top_k, 20)``): a chunk
past the semantic depth gains nothing from its semantic rank (the semantic statement's LIMIT)."""

from __future__ import annotations

from typing import Any

import pytest

from documents.models import Document
from documents.search import search_chunks
from tenants.models import Tenant
from tests.documents.pdfs import filler, make_pdf

QUERY = "sunflower"


@pytest.fixture
def flowers(ready_document: Any, settings: Any) -> Document:
    """About 30 chunks of "sun flower" (the hashing embedder's tokens of "sunflower": near the query's
    vector, but no full-text match of the word), and a target whose one chunk holds the word itself
    among filler (the only keyword match, and the last in the semantic order)."""
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 40, 0
    ready_document(make_pdf(["sun flower " * 150] * 4), "flowers.pdf")
    return ready_document(make_pdf([filler(15, seed=3) + " sunflower " + filler(15, seed=4)]), "target.pdf")


def test_a_chunk_past_the_semantic_depth_gains_nothing_from_its_semantic_rank(
    flowers: Document, tenant: Tenant
) -> None:
    semantic = search_chunks(tenant=tenant, query=QUERY, mode="semantic", top_k=50)
    [target] = search_chunks(tenant=tenant, query=QUERY, mode="keyword", top_k=50)
    assert target.document_id == flowers.pk
    assert 20 <= [hit.chunk_id for hit in semantic].index(target.chunk_id) < len(semantic)

    hits = search_chunks(tenant=tenant, query=QUERY, mode="hybrid", top_k=10)  # depth 20

    # Keyword rank 1 alone (1/61) is below every semantic rank within the depth (1.5/80 at least); its
    # semantic rank past the depth (the last, about the 33rd) would have added about 1.5/93: first.
    assert target.chunk_id not in {hit.chunk_id for hit in hits}
    assert [hit.retrievers for hit in hits] == [("semantic",)] * 10
    assert [hit.score for hit in hits] == [round(1.5 / (60 + rank), 6) for rank in range(1, 11)]
