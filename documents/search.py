"""Search over a tenant's ready chunks: semantic (pgvector), keyword (full text) and hybrid (RRF).

:func:`search_chunks` is the one entry point (the API and the chat's retrieval both call it). A
search is **two round trips** at most, each one multi-statement string (:func:`run_batch`: simple query
protocol, values bound client-side, so never a server-prepared plan made under other settings), run in
order in one implicit transaction: the keyword and plan statements, then (after embedding the query with
the embedder the stored settings name) the semantic statement of the plan chosen; a keyword search is one.

Semantic
    Cosine distance between the query's vector and the tenant's active embedder's vectors
    (:class:`documents.models.ChunkEmbedding`, joined to their chunks; each embedder's rows have their
    own partial HNSW index on ``embedding::halfvec(n)``, see :mod:`documents.vectors`, and the query
    repeats that expression and predicate so the planner can use it). Two plans, chosen per query from the number of
    chunks that can match (the ``chunk_count`` of the tenant's ready documents, narrowed by project
    and document ids), by the plan statement (:func:`plan_statement`, its rule :func:`exact_plan_sql`):

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

    The plan statement decides on the server; the second round trip holds only the chosen plan's
    statement, after ``set_config(..., true)`` of the approximate plan's settings, which end with its
    implicit transaction (inside a caller's transaction the batch runs in a savepoint that it rolls
    back to). One statement holding both plans behind a one-time filter would save a round trip but
    cost more: PostgreSQL plans both, and a parallel exact plan starts its workers even when its
    filter is false (measured on 100k chunks: about 15 ms at the median, where a round trip is < 1 ms).

Keyword
    PostgreSQL full text with the ``simple`` configuration (no stemming, no stop words: any
    language). The query's words (its first ``MAX_QUERY_LEXEMES`` lexemes) are OR-ed (a chunk
    matching more of them ranks higher, by ``ts_rank_cd`` normalised by length), through the GIN
    index. It runs first, under the default planner settings.

Hybrid (default)
    Weighted reciprocal rank fusion of both lists (``weight / (60 + rank)`` summed; the semantic list
    weighs ``SEARCH_SEMANTIC_WEIGHT``, 1.5 by default, the keyword list 1), each hit saying which
    retrievers found it. The weight was chosen on the development half of the labelled evaluation
    (``benchmarks/retrieval.py``): with the local embedder, equal weights let the keyword list's
    matches on common words ("how", "many") push paraphrase hits down (dev nDCG@10 0.85 at 1.0, 0.89 at
    1.5, 0.87 at 2.0). No cross-encoder re-ranker installs from PyPI with its weights (they
    are downloaded from a model hub at run time), so there is no re-ranking stage.

The query is embedded by the embedder the stored settings name (the plan statement reads them; a
chat socket's copy of the tenant may predate a switch). Only ``ready`` documents of the tenant are searched; a deleted document's chunks are gone with it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from config.errors import ValidationFailed
from documents.embedding_base import Embedder
from documents.embeddings import get_embedder, tenant_embedder_name, vector_literal
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
SAVEPOINT = "documind_search"

CHUNK_TABLE = Chunk._meta.db_table
EMBEDDING_TABLE = ChunkEmbedding._meta.db_table
DOCUMENT_TABLE = Document._meta.db_table
TENANT_TABLE = Tenant._meta.db_table
HIT_COLUMNS = (
    "c.id, c.document_id, d.title, c.page_start, c.page_end, c.text, {score}, c.page_breaks, c.source, c.ocr_confidence"
)

Statement = tuple[str, list[Any]]  # SQL and its values
Embedded = tuple[Sequence[float], str, int]  # a query's vector, its model and width


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
    ocr_confidence: float | None  # the lowest OCR confidence of the chunk's scanned pages (None: text layer)


@dataclass(frozen=True)
class SearchHit(_Row):
    """One ranked chunk. ``score``: cosine similarity (semantic), ts_rank_cd (keyword) or RRF (hybrid)."""

    retrievers: tuple[str, ...]


@dataclass(frozen=True)
class SearchPlan:
    """What the plan statement decided (exposed for tests and the benchmark)."""

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


def search_filters(tenant: Tenant, project_id: Any, document_ids: Sequence[Any] | None) -> tuple[str, list[Any]]:
    """The document-level WHERE clause (alias ``d``: the tenant's ready documents, narrowed) and its values."""
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


def exact_plan_sql(depth: int) -> Statement:
    """The plan rule, a condition on ``candidates`` (the chunks the filters leave) and ``table_rows`` (the
    chunk table's estimated size): exact for few candidates, and whenever the filters are so selective that
    an iterative HNSW scan would likely stop (``hnsw.max_scan_tuples``) before it found ``depth`` of them."""
    sql = (
        "(candidates <= %s OR (table_rows > 0 AND "
        "%s * greatest(table_rows, candidates) / greatest(candidates, 1) > %s))"
    )
    return sql, [settings.SEARCH_EXACT_MAX_CHUNKS, depth, HNSW_MAX_SCAN_TUPLES / 2]


def plan_statement(*, tenant: Tenant, depth: int, where: str, params: Sequence[Any]) -> Statement:
    """Candidates, table size, the tenant's stored settings and the plan (:func:`exact_plan_sql`)."""
    rule, rule_params = exact_plan_sql(depth)
    sql = f"""
        SELECT n.candidates, n.table_rows, n.tenant_settings, {rule} AS exact
        FROM (SELECT COALESCE(SUM(d.chunk_count), 0)::float8 AS candidates,
                     (SELECT reltuples FROM pg_class WHERE oid = '{CHUNK_TABLE}'::regclass)::float8 AS table_rows,
                     (SELECT settings FROM {TENANT_TABLE} WHERE id = %s) AS tenant_settings
              FROM {DOCUMENT_TABLE} d WHERE {where}) n"""
    return sql, [*rule_params, tenant.pk, *params]


def hnsw_settings_statement(depth: int) -> Statement:
    """The approximate plan's planner settings, for the rest of the round trip's transaction."""
    sql = (
        "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', %s, true), "
        "set_config('enable_sort', 'off', true)"
    )
    return sql, [str(max(settings.SEARCH_EF_SEARCH, depth))]


def semantic_statement(
    *, tenant: Tenant, embedded: Embedded, limit: int, where: str, params: Sequence[Any], exact: bool
) -> Statement:
    """The ``limit`` nearest chunks by cosine distance, in the plan chosen (see the module docstring)."""
    vector, model, dimensions = embedded
    distance = distance_sql("e", dimensions)
    # The tenant is checked on the vector row too (defence in depth), but in the exact plan in a form
    # no index matches; the document join already narrows to the tenant there.
    tenant_check, order = (
        ("(e.tenant_id = %s) IS TRUE", f"({distance}) + 0") if exact else ("e.tenant_id = %s", distance)
    )
    sql = f"""
        SELECT {HIT_COLUMNS.format(score=f"{distance} AS distance")}
        FROM {EMBEDDING_TABLE} e JOIN {CHUNK_TABLE} c ON c.id = e.chunk_id
        JOIN {DOCUMENT_TABLE} d ON d.id = c.document_id
        WHERE {embedder_predicate("e", model, dimensions)} AND {tenant_check} AND {where}
        ORDER BY {order}
        LIMIT %s"""
    literal = vector_literal(vector)
    return sql, [literal, tenant.pk, *params, literal, limit]


def keyword_statement(*, tenant: Tenant, query: str, limit: int, where: str, params: Sequence[Any]) -> Statement:
    """The ``limit`` best full-text matches: the query's first lexemes OR-ed (each quoted as a tsquery
    lexeme), ranked by cover density. A query with no lexemes makes a NULL tsquery, which matches nothing."""
    sql = rf"""
        WITH lexemes AS (SELECT lexeme FROM unnest(to_tsvector(%s::regconfig, %s)) ORDER BY positions[1] LIMIT %s),
             words AS (SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')
                              ::tsquery AS q FROM lexemes)
        SELECT {HIT_COLUMNS.format(score="ts_rank_cd(c.search_vector, (SELECT q FROM words), 1) AS rank")}
        FROM {CHUNK_TABLE} c JOIN {DOCUMENT_TABLE} d ON d.id = c.document_id
        WHERE c.search_vector @@ (SELECT q FROM words) AND c.tenant_id = %s AND {where}
        ORDER BY rank DESC, c.id
        LIMIT %s"""
    return sql, [TS_CONFIG, query, MAX_QUERY_LEXEMES, tenant.pk, *params, limit]


def run_batch(statements: Sequence[Statement]) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` in order in one round trip; the rows of each.

    One simple-protocol string (values bound here, client-side), one implicit transaction. Inside a
    caller's transaction it runs within a savepoint that it rolls back to and releases, which undoes the
    planner settings the batch made (the statements only read).
    """
    sql = ";\n".join(text for text, _ in statements)
    if not connection.get_autocommit():  # a caller's transaction (an atomic block)
        sql = f"SAVEPOINT {SAVEPOINT};\n{sql};\nROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
    composed = connection.ops.compose_sql(sql, [value for _, values in statements for value in values])
    results: list[list[tuple[Any, ...]]] = []
    with connection.cursor() as cursor:
        cursor.execute(composed)
        while True:
            if cursor.description is not None:
                results.append(cursor.fetchall())
            if not cursor.nextset():
                return results


def _rows(rows: list[tuple[Any, ...]], *, distance: bool) -> list[_Row]:
    """Result rows as :class:`_Row` (a distance becomes a cosine similarity), best first."""
    hits = [
        _Row(
            r[0], r[1], r[2], r[3], r[4], r[5], 1.0 - float(r[6]) if distance else float(r[6]), _json(r[7]), r[8], r[9]
        )
        for r in rows
    ]
    hits.sort(key=lambda row: (-row.score, row.chunk_id))  # the HNSW plan's relaxed order: re-sort the few rows
    return hits


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


def use_exact(candidates: int, table_rows: float, depth: int) -> bool:
    """:func:`exact_plan_sql` for given figures, evaluated by PostgreSQL as the plan statement does."""
    rule, params = exact_plan_sql(depth)
    sql = f"SELECT {rule} FROM (SELECT %s::float8 AS candidates, %s::float8 AS table_rows) n"
    [[(exact,)]] = run_batch([(sql, [*params, candidates, table_rows])])
    return bool(exact)


def plan_search(
    *, tenant: Tenant, project_id: Any = None, document_ids: Sequence[Any] | None = None, depth: int = 20
) -> SearchPlan:
    """How many chunks a search could match and whether its semantic part would be exact."""
    where, params = search_filters(tenant, project_id, document_ids)
    [[row]] = run_batch([plan_statement(tenant=tenant, depth=depth, where=where, params=params)])
    return SearchPlan(int(row[0]), bool(row[3]))


def search_statements(
    *, tenant: Tenant, query: str, mode: str, depth: int, where: str, params: Sequence[Any]
) -> list[Statement]:
    """The first round trip of a search, in order: keyword (unless semantic only), then plan (unless keyword
    only; it also returns the stored settings, which name the embedder)."""
    statements = []
    if mode != "semantic":
        statements.append(keyword_statement(tenant=tenant, query=query, limit=depth, where=where, params=params))
    if mode != "keyword":
        statements.append(plan_statement(tenant=tenant, depth=depth, where=where, params=params))
    return statements


def semantic_statements(
    *, tenant: Tenant, embedded: Embedded, depth: int, where: str, params: Sequence[Any], exact: bool
) -> list[Statement]:
    """The second round trip: the semantic statement in the plan chosen, after the approximate plan's settings."""
    semantic = semantic_statement(
        tenant=tenant, embedded=embedded, limit=depth, where=where, params=params, exact=exact
    )
    return [semantic] if exact else [hnsw_settings_statement(depth), semantic]


def embed_query(embedder: Embedder, query: str, *, tenant: Tenant, user: Any) -> Embedded | None:
    """``(vector, model, dimensions)`` of ``query``; None when the vector is all zeros (e.g. only
    punctuation: cosine distance is undefined). A metered provider's tokens go to the usage ledger."""
    embedded = embedder.embed_query(query)
    if embedder.metered:
        from tenants.usage import usage_record

        usage_record(tenant=tenant, user=user, kind="embedding", model=embedder.model, embedding_tokens=embedded.tokens)
    vector = embedded.vectors[0]
    return (vector, embedder.model, embedder.dimensions) if any(vector) else None


def _retrieve(
    *, tenant: Tenant, query: str, mode: str, depth: int, where: str, params: list[Any], embedder: Embedder | None,
    user: Any,
) -> tuple[dict[str, list[_Row]], str]:  # fmt: skip
    """At most two round trips: keyword rows and the plan, then (after embedding the query with the embedder
    the stored settings name) the semantic rows. Each retriever's rows and the plan (for the metrics)."""
    results = run_batch(
        search_statements(tenant=tenant, query=query, mode=mode, depth=depth, where=where, params=params)
    )
    ranked = {"keyword": _rows(results.pop(0), distance=False)} if mode != "semantic" else {}
    if mode == "keyword":
        return ranked, "keyword"
    [(candidates, _, stored, exact)] = results.pop(0)
    embedder = embedder or get_embedder(tenant_embedder_name(Tenant(pk=tenant.pk, settings=_json(stored) or {})))
    embedded = embed_query(embedder, query, tenant=tenant, user=user)
    if embedded is None:  # "none": a semantic query with no vector (punctuation)
        return ranked, "keyword" if mode != "semantic" else "none"
    if not candidates:
        return {"semantic": [], **ranked}, "empty"
    statements = semantic_statements(
        tenant=tenant, embedded=embedded, depth=depth, where=where, params=params, exact=exact
    )
    semantic = run_batch(statements)[-1]
    return {"semantic": _rows(semantic, distance=True), **ranked}, "exact" if exact else "hnsw"


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
    where, params = search_filters(tenant, project_id, document_ids)
    depth = top_k if mode != "hybrid" else max(2 * top_k, 20)
    ranked, plan = _retrieve(
        tenant=tenant, query=query, mode=mode, depth=depth, where=where, params=params, embedder=embedder, user=user
    )
    if mode == "hybrid":
        hits = fuse(ranked, top_k)
    else:
        hits = [_hit(row, row.score, (mode,)) for row in ranked.get(mode, [])[:top_k]]
    record_search(mode=mode, plan=plan, seconds=time.perf_counter() - started)
    return hits
