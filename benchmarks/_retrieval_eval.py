"""The labelled retrieval evaluation, shared by ``benchmarks/retrieval.py`` and the floor test.

Corpus: ``benchmarks/retrieval_corpus/pdf/*.pdf`` (self-made texts in ``text/``, see ``make_pdfs.py``).
Queries: ``retrieval_corpus/queries.tsv``: id, kind (paraphrase, exact, number, multipage, german,
crosslingual), the relevant document and its relevant pages, and the query. Every other query is in
the development half (tuning), the rest in the test half (the floor test).

The corpus goes through the real extractor and chunker (``CHUNK_TOKENS``/``CHUNK_OVERLAP``) into one
tenant's chunks, and every embedder's vectors are stored beside each other on the same chunks, so
that embedders and modes are compared on identical chunks with :func:`documents.search.search_chunks`.

Relevance is judged by page: a hit gains one for every relevant page of the query's document that
its page range covers and no better-ranked hit covered already (so one page found twice counts
once). nDCG@10 divides by an ideal list of ``min(relevant pages, 10)`` one-page hits (capped at 1: a
chunk spanning two relevant pages at rank 1 is perfect); recall@10 is
the share of relevant pages covered by the first ten hits; MRR the reciprocal rank of the first
relevant hit (0 when none is in the ten).

Import it once Django is set up.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "retrieval_corpus"
K = 10


@dataclass(frozen=True)
class Query:
    id: str
    kind: str
    document: str
    pages: frozenset[int]
    text: str
    split: str  # "dev" or "test"


@dataclass
class Scores:
    """Mean metrics over a set of queries, with per-query latencies (ms)."""

    ndcg: float
    recall: float
    mrr: float
    latencies_ms: list[float] = field(default_factory=list)
    per_query: dict[str, float] = field(default_factory=dict)  # nDCG@10 per query id

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else 0.0

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0


def load_queries(split: str | None = None) -> list[Query]:
    """The labelled queries (``split``: ``dev``, ``test`` or None for all)."""
    queries: list[Query] = []
    for line in (CORPUS / "queries.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        qid, kind, document, pages, text = line.split("\t")
        queries.append(
            Query(
                id=qid,
                kind=kind,
                document=document,
                pages=frozenset(int(p) for p in pages.split(",")),
                text=text,
                split="dev" if len(queries) % 2 == 0 else "test",
            )
        )
    return [q for q in queries if split is None or q.split == split]


def corpus_pdfs() -> list[Path]:
    return sorted((CORPUS / "pdf").glob("*.pdf"))


def load_corpus(tenant: Any, owner: Any, embedders: Sequence[Any]) -> dict[str, Any]:
    """Extract, chunk and embed (with every one of ``embedders``) the corpus into ``tenant``'s
    ready documents; returns ``{document stem: Document}``. Run inside a transaction or a test."""
    from django.conf import settings

    from documents.chunking import chunk_pages
    from documents.chunkstore import chunks_replace, embeddings_store
    from documents.extraction import get_extractor
    from documents.models import Chunk, Document

    extractor = get_extractor()
    documents: dict[str, Any] = {}
    for path in corpus_pdfs():
        data = path.read_bytes()
        document = Document.objects.create(
            tenant=tenant,
            owner=owner,
            title=path.stem,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            status=Document.Status.READY,
        )
        pages = list(extractor.pages(str(path)))
        chunks = chunk_pages(pages, chunk_tokens=settings.CHUNK_TOKENS, overlap=settings.CHUNK_OVERLAP)
        texts = [chunk.text for chunk in chunks]
        first, *others = embedders
        chunks_replace(document=document, chunks=chunks, vectors=first.embed(texts).vectors, embedder=first)
        ids = list(Chunk.objects.filter(document=document).order_by("index").values_list("id", flat=True))
        for embedder in others:
            from documents.vectors import ensure_index

            ensure_index(embedder.model, embedder.dimensions)
            vectors = embedder.embed(texts).vectors
            embeddings_store(
                tenant_id=tenant.pk,
                rows=list(zip(ids, vectors, strict=True)),
                model=embedder.model,
                dimensions=embedder.dimensions,
            )
        Document.objects.filter(pk=document.pk).update(chunk_count=len(chunks), page_count=len(pages))
        documents[path.stem] = document
    return documents


def judge(hits: Iterable[Any], query: Query, document_id: Any) -> tuple[float, float, float]:
    """nDCG@10, recall@10 and reciprocal rank of one ranked list (see the module docstring)."""
    covered: set[int] = set()
    dcg, first = 0.0, 0
    for rank, hit in enumerate(list(hits)[:K], start=1):
        if str(hit.document_id) != str(document_id):
            continue
        pages = set(range(hit.page_start, hit.page_end + 1)) & query.pages
        if not pages:
            continue
        first = first or rank
        if pages - covered:
            dcg += len(pages - covered) / math.log2(rank + 1)
            covered |= pages
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(query.pages), K) + 1))
    return min(1.0, dcg / ideal), len(covered) / len(query.pages), (1.0 / first if first else 0.0)


def evaluate(
    tenant: Any, documents: dict[str, Any], queries: Sequence[Query], *, mode: str, embedder: Any = None
) -> Scores:
    """Run every query (top 10) and average the metrics."""
    from documents.search import search_chunks

    ndcgs, recalls, rrs, latencies = [], [], [], []
    per_query: dict[str, float] = {}
    for query in queries:
        started = time.perf_counter()
        hits = search_chunks(tenant=tenant, query=query.text, top_k=K, mode=mode, embedder=embedder)
        latencies.append((time.perf_counter() - started) * 1000)
        ndcg, recall, rr = judge(hits, query, documents[query.document].pk)
        ndcgs.append(ndcg)
        recalls.append(recall)
        rrs.append(rr)
        per_query[query.id] = ndcg
    return Scores(
        ndcg=statistics.fmean(ndcgs),
        recall=statistics.fmean(recalls),
        mrr=statistics.fmean(rrs),
        latencies_ms=latencies,
        per_query=per_query,
    )
