"""Search over a tenant's ready chunks: semantic (pgvector), keyword (full text) and hybrid (RRF).

:func:`search_chunks` is the one entry point (the API and the chat's retrieval both call it).

Semantic
    Cosine distance between the query's vector and the tenant's active embedder's vectors
    (:class:`documents.models.ChunkEmbedding`, joined to their chunks; each embedder's rows have their
    own partial HNSW index on ``embedding::halfvec(n)``, see :mod:`documents.vectors`, and the query
    repeats that expression and predicate so the planner can use it). Two plans, chosen per query from the number of
    chunks that can match (the ``chunk_count`` of the tenant's ready documents, narrowed by project
    and document ids):

    * *exact* when that is at most ``SEARCH_EXACT_MAX_CHUNKS`` (about 4 µs a chunk: 7 ms for
      2,000), or when the filters keep so small a share of the table that an iterative HNSW scan
      would likely run out of its ``hnsw.max_scan_tuples`` budget first: the ORDER BY is written so
      that the HNSW index cannot serve it (``distance + 0``), so PostgreSQL reads just those
      documents' chunks through the ``document_id`` index and sorts them: recall 1.
    * *approximate* otherwise: the HNSW index scan with the tenant/status/project filters applied
      as it goes, and ``hnsw.iterative_scan = relaxed_order`` so that filtering out other tenants'
      rows does not leave fewer than ``k`` results (the tenant filter costs no recall);
      ``hnsw.ef_search = SEARCH_EF_SEARCH``; and ``enable_sort = off`` so that the planner does
      not trade the index for a scan of the tenant's rows plus a sort (what it picks otherwise, at
      ten times the latency). The few rows come back in relaxed order and are re-sorted here.

    The planner settings are ``SET LOCAL`` (``set_config(..., true)``) inside the search's own
    transaction, and the statements are executed with ``prepare=False``: psycopg 3 prepares a
    statement on the server after a few executions (when ``prepare_threshold`` is configured) and
    would reuse a plan made under other settings.

Keyword
    PostgreSQL full text with the ``simple`` configuration (no stemming, no stop words: any
    language). The query's words are OR-ed (a chunk matching more of them ranks higher, by
    ``ts_rank_cd`` normalised by length), through the GIN index.

Hybrid (default)
    Weighted reciprocal rank fusion of both lists (``weight / (60 + rank)`` summed; the semantic list
    weighs ``SEARCH_SEMANTIC_WEIGHT``, 1.5 by default, the keyword list 1), each hit saying which
    retrievers found it. The weight was chosen on the development half of the labelled evaluation
    (``benchmarks/retrieval.py``): with the local embedder, equal weights let the keyword list's
    matches on common words ("how", "many") push paraphrase hits down (dev nDCG@10 0.85 at 1.0, 0.89 at
    1.5, 0.87 at 2.0). No cross-encoder re-ranker installs from PyPI with its weights (they
    are downloaded from a model hub at run time), so there is no re-ranking stage.

Only ``ready`` documents of the tenant are searched; a deleted document's chunks are gone with it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from config.errors import ValidationFailed
from documents.embeddings import Embedder, tenant_embedder, vector_literal
from documents.models import TS_CONFIG, Chunk, ChunkEmbedding, Document
from documents.vectors import distance_sql, embedder_predicate
from health.metrics import record_search
from tenants.models import Tenant

MODES = ("semantic", "keyword", "hybrid")
MAX_QUERY_CHARS = 2000
MAX_TOP_K = 50
RRF_K = 60
MAX_QUERY_LEXEMES = 64
HNSW_MAX_SCAN_TUPLES = 20_000  # pgvector's default hnsw.max_scan_tuples, the iterative scan's budget

CHUNK_TABLE = Chunk._meta.db_table
EMBEDDING_TABLE = ChunkEmbedding._meta.db_table
DOCUMENT_TABLE = Document._meta.db_table


@dataclass(frozen=True)
class _Row:
    """A chunk as one retriever ranked it."""

    chunk_id: int
    document_id: uuid.UUID
    document_title: str
    page_start: int
    page_end: int
    text: str
    score: float
    page_breaks: list[list[int]] | None  # [offset in text, page] of each later page (None: unknown)
    source: str  # text layer or OCR (Chunk.source)


@dataclass(frozen=True)
class SearchHit(_Row):
    """One ranked chunk. ``score``: cosine similarity (semantic), ts_rank_cd (keyword) or RRF (hybrid)."""

    retrievers: tuple[str, ...]


@dataclass(frozen=True)
class SearchPlan:
    """What :func:`search_chunks` decided (exposed for tests and the benchmark)."""

    candidate_chunks: int
    exact: bool


def _json(value: Any) -> Any:
    """A jsonb column read through the raw cursor (Django's connection hands jsonb over as text)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _validate(query: str, top_k: int, mode: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValidationFailed(
            "query must not be empty.", details={"fields": {"query": ["This field may not be blank."]}}
        )
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationFailed(
            f"query is longer than {MAX_QUERY_CHARS} characters.",
            details={"fields": {"query": [f"At most {MAX_QUERY_CHARS} characters."]}},
        )
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise ValidationFailed(
            f"top_k must be between 1 and {MAX_TOP_K}.", details={"fields": {"top_k": [f"Between 1 and {MAX_TOP_K}."]}}
        )
    if mode not in MODES:
        raise ValidationFailed(f"mode must be one of {', '.join(MODES)}.", details={"fields": {"mode": list(MODES)}})
    return query.strip()


def _filters(tenant: Tenant, project_id: Any, document_ids: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """The document-level WHERE clause (alias ``d``) and its parameters."""
    sql = ["d.tenant_id = %s", "d.status = %s"]
    params: list[Any] = [tenant.pk, Document.Status.READY]
    try:
        if project_id is not None:
            sql.append("d.project_id = %s")
            params.append(uuid.UUID(str(project_id)))
        if document_ids is not None:
            sql.append("d.id = ANY(%s)")
            params.append([uuid.UUID(str(value)) for value in document_ids])
    except ValueError as exc:
        raise ValidationFailed("project and document ids must be UUIDs.") from exc
    return " AND ".join(sql), params


def _execute(cursor: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the raw psycopg cursor, never as a server-side prepared statement."""
    raw = cursor.cursor
    raw.execute(sql, params, prepare=False)
    return raw.fetchall() if raw.description else []


def _set_local(cursor: Any, **values: str) -> None:
    for name, value in values.items():
        _execute(cursor, "SELECT set_config(%s, %s, true)", [name.replace("__", "."), value])


def candidate_count(cursor: Any, where: str, params: Sequence[Any]) -> tuple[int, float]:
    """The chunks the filters leave (from the documents' chunk counts) and the table's estimated size."""
    rows = _execute(
        cursor,
        f"SELECT COALESCE(SUM(d.chunk_count), 0), "
        f"(SELECT reltuples FROM pg_class WHERE oid = '{CHUNK_TABLE}'::regclass) "
        f"FROM {DOCUMENT_TABLE} d WHERE {where}",
        params,
    )
    return int(rows[0][0]), float(rows[0][1] or 0)


def use_exact(candidates: int, table_rows: float, depth: int) -> bool:
    """Exact search for few candidates, and whenever the filters are so selective that an iterative
    HNSW scan would likely stop (``hnsw.max_scan_tuples``) before it found ``depth`` of them."""
    if candidates <= settings.SEARCH_EXACT_MAX_CHUNKS:
        return True
    if table_rows <= 0:  # never analysed: no estimate
        return False
    expected_scan = depth * max(table_rows, candidates) / candidates
    return expected_scan > HNSW_MAX_SCAN_TUPLES / 2


def semantic_rows(
    cursor: Any,
    *,
    tenant: Tenant,
    vector: Sequence[float],
    model: str,
    dimensions: int,
    limit: int,
    where: str,
    params: Sequence[Any],
    exact: bool,
) -> list[_Row]:
    """The ``limit`` nearest chunks by cosine distance (see the module docstring for the two plans)."""
    literal = vector_literal(vector)
    distance = distance_sql("e", dimensions)
    # The tenant is checked on the vector row too (defence in depth), but in the exact plan in a form
    # no index matches; the document join already narrows to the tenant there.
    tenant_check = "e.tenant_id = %s"
    if exact:
        order = f"({distance}) + 0"
        tenant_check = "(e.tenant_id = %s) IS TRUE"
    else:
        _set_local(
            cursor,
            hnsw__iterative_scan="relaxed_order",
            hnsw__ef_search=str(max(settings.SEARCH_EF_SEARCH, limit)),
            enable_sort="off",
        )
        order = distance
    sql = f"""
        SELECT c.id, c.document_id, d.title, c.page_start, c.page_end, c.text, {distance} AS distance, c.page_breaks,
               c.source
        FROM {EMBEDDING_TABLE} e
        JOIN {CHUNK_TABLE} c ON c.id = e.chunk_id
        JOIN {DOCUMENT_TABLE} d ON d.id = c.document_id
        WHERE {embedder_predicate("e", model, dimensions)} AND {tenant_check} AND {where}
        ORDER BY {order}
        LIMIT %s
    """
    rows = _execute(cursor, sql, [literal, tenant.pk, *params, literal, limit])
    if not exact:
        _set_local(cursor, enable_sort="on")
    hits = [_Row(r[0], r[1], r[2], r[3], r[4], r[5], 1.0 - float(r[6]), _json(r[7]), r[8]) for r in rows]
    hits.sort(key=lambda row: (-row.score, row.chunk_id))  # relaxed order: re-sort the few rows
    return hits


def _tsquery_literal(lexemes: Iterable[str]) -> str:
    quoted = []
    for lexeme in lexemes:
        escaped = lexeme.replace("\\", "\\\\").replace("'", "''")
        quoted.append(f"'{escaped}'")
    return " | ".join(quoted)


def keyword_rows(
    cursor: Any, *, tenant: Tenant, query: str, limit: int, where: str, params: Sequence[Any]
) -> list[_Row]:
    """The ``limit`` best full-text matches (words OR-ed, ranked by cover density)."""
    lexemes = [
        row[0]
        for row in _execute(
            cursor,
            "SELECT lexeme FROM unnest(to_tsvector(%s::regconfig, %s)) ORDER BY positions[1]",
            [TS_CONFIG, query],
        )
    ][:MAX_QUERY_LEXEMES]
    if not lexemes:
        return []
    tsquery = _tsquery_literal(lexemes)
    sql = f"""
        SELECT c.id, c.document_id, d.title, c.page_start, c.page_end, c.text,
               ts_rank_cd(c.search_vector, %s::tsquery, 1) AS rank, c.page_breaks, c.source
        FROM {CHUNK_TABLE} c JOIN {DOCUMENT_TABLE} d ON d.id = c.document_id
        WHERE c.search_vector @@ %s::tsquery AND c.tenant_id = %s AND {where}
        ORDER BY rank DESC, c.id
        LIMIT %s
    """
    rows = _execute(cursor, sql, [tsquery, tsquery, tenant.pk, *params, limit])
    return [_Row(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), _json(r[7]), r[8]) for r in rows]


def fuse(ranked: dict[str, list[_Row]], top_k: int) -> list[SearchHit]:
    """Weighted reciprocal rank fusion: score = Σ weight / (RRF_K + rank) over the lists holding the chunk
    (weights: ``SEARCH_SEMANTIC_WEIGHT`` for the semantic list, 1 for the keyword list)."""
    weights = {"semantic": float(settings.SEARCH_SEMANTIC_WEIGHT), "keyword": 1.0}
    scores: dict[int, float] = {}
    found: dict[int, list[str]] = {}
    rows: dict[int, _Row] = {}
    for retriever, hits in ranked.items():
        for rank, row in enumerate(hits, start=1):
            scores[row.chunk_id] = scores.get(row.chunk_id, 0.0) + weights.get(retriever, 1.0) / (RRF_K + rank)
            found.setdefault(row.chunk_id, []).append(retriever)
            rows.setdefault(row.chunk_id, row)
    order = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))[:top_k]
    return [_hit(rows[chunk_id], scores[chunk_id], tuple(found[chunk_id])) for chunk_id in order]


def _hit(row: _Row, score: float, retrievers: tuple[str, ...]) -> SearchHit:
    return SearchHit(**{**vars(row), "score": round(score, 6)}, retrievers=retrievers)


def plan_search(
    *, tenant: Tenant, project_id: Any = None, document_ids: Sequence[Any] | None = None, depth: int = 20
) -> SearchPlan:
    """How many chunks a search could match and whether its semantic part would be exact."""
    where, params = _filters(tenant, project_id, document_ids)
    with connection.cursor() as cursor:
        count, table_rows = candidate_count(cursor, where, params)
    return SearchPlan(count, use_exact(count, table_rows, depth))


def search_chunks(
    *,
    tenant: Tenant,
    query: str,
    top_k: int = 8,
    mode: str = "hybrid",
    project_id: Any = None,
    document_ids: Sequence[Any] | None = None,
    user: Any = None,
    embedder: Embedder | None = None,
) -> list[SearchHit]:
    """The ``top_k`` chunks of ``tenant``'s ready documents that best match ``query``.

    ``mode``: ``semantic``, ``keyword`` or ``hybrid``; ``project_id`` / ``document_ids`` narrow the
    documents (an empty ``document_ids`` list matches nothing). Raises ``ValidationFailed`` for a bad
    query, top_k or mode, and ``EmbeddingError`` (502) when the embedding provider fails. Query
    embeddings from a metered provider go to the usage ledger (``user`` when given).
    """
    query = _validate(query, top_k, mode)
    if tenant is None or (document_ids is not None and len(document_ids) == 0):
        return []
    started = time.perf_counter()
    where, params = _filters(tenant, project_id, document_ids)
    depth = top_k if mode != "hybrid" else max(2 * top_k, 20)

    vector: list[float] | None = None
    model, dimensions = "", 0
    if mode in ("semantic", "hybrid"):
        # The tenant's embedder as stored now, not as the caller's copy says: a long-lived copy (a
        # chat socket's) would otherwise query the vectors a switch has just deleted.
        current = Tenant.objects.filter(pk=tenant.pk).values_list("settings", flat=True).first()
        embedder = embedder or tenant_embedder(Tenant(pk=tenant.pk, settings=current or {}))
        embedded = embedder.embed_query(query)
        vector, model, dimensions = embedded.vectors[0], embedder.model, embedder.dimensions
        if embedder.metered:
            from tenants.usage import usage_record

            usage_record(tenant=tenant, user=user, kind="embedding", model=model, embedding_tokens=embedded.tokens)
        if not any(vector):
            vector = None  # nothing to compare (e.g. only punctuation): cosine distance is undefined

    ranked: dict[str, list[_Row]] = {}
    plan = "keyword" if mode != "semantic" else "none"  # "none": a query with no vector (punctuation)
    with transaction.atomic(), connection.cursor() as cursor:
        count, table_rows = candidate_count(cursor, where, params)
        if count == 0:
            record_search(mode=mode, plan="empty", seconds=time.perf_counter() - started)
            return []
        if vector is not None:
            exact = use_exact(count, table_rows, depth)
            plan = "exact" if exact else "hnsw"
            ranked["semantic"] = semantic_rows(
                cursor,
                tenant=tenant,
                vector=vector,
                model=model,
                dimensions=dimensions,
                limit=depth,
                where=where,
                params=params,
                exact=exact,
            )
        if mode in ("keyword", "hybrid"):
            ranked["keyword"] = keyword_rows(
                cursor, tenant=tenant, query=query, limit=depth, where=where, params=params
            )

    if mode == "hybrid":
        hits = fuse(ranked, top_k)
    else:
        hits = [_hit(row, row.score, (mode,)) for row in ranked.get(mode, [])[:top_k]]
    record_search(mode=mode, plan=plan, seconds=time.perf_counter() - started)
    return hits
