"""Chunk vectors: one untyped ``halfvec`` column, one partial expression HNSW index per embedder.

Embedders differ in width (MiniLM 384, hashing and text-embedding-3-small 1536 by default, any
``EMBEDDING_DIMENSIONS`` for OpenAI). Zero-padding every vector to one width would cost up to 4x the
storage and index size for the narrow ones, so :class:`documents.models.ChunkEmbedding` stores each
vector at its own width in an untyped ``halfvec`` column, with the embedder's model and width beside
it. HNSW needs a fixed width, so each (model, width) gets its own index on the expression
``embedding::halfvec(<width>)``, restricted (``WHERE model = '<model>' AND dimensions = <width>``) to
that embedder's rows. A query uses the index when it repeats the expression and the predicate
literally: :func:`distance_sql` and :func:`embedder_predicate` write both, with the model inlined as
a literal (it is one of our embedders' names, checked against :data:`_MODEL_RE`) rather than a bind
parameter, so that the planner can prove the predicate whatever the statement's preparation.

The indexes are made by :func:`ensure_index`: after ``migrate`` for every configured embedder and for
every (model, width) already stored (``documents.apps``), and before an embedder's first vectors are
stored (ingestion, re-embedding). ``CREATE INDEX IF NOT EXISTS`` makes it idempotent; a process
remembers the indexes it has seen.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import Any

from django.db import connection, transaction

TABLE = "documents_chunkembedding"
INDEX_PREFIX = "documents_chunkemb_hnsw_"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
MAX_HNSW_DIMENSIONS = 4000  # pgvector's limit for an HNSW index on halfvec
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$")
_known: set[str] = set()
_lock = threading.Lock()


def _check(model: str, dimensions: int) -> tuple[str, int]:
    if not _MODEL_RE.match(model or ""):
        raise ValueError(f"unusable embedding model name {model!r}")
    dimensions = int(dimensions)
    if not 1 <= dimensions <= MAX_HNSW_DIMENSIONS:
        raise ValueError(f"{dimensions} dimensions: an HNSW index takes 1 to {MAX_HNSW_DIMENSIONS}")
    return model, dimensions


def index_name(model: str, dimensions: int) -> str:
    """The name of the HNSW index of ``model`` at ``dimensions`` (stable, within PostgreSQL's 63 bytes)."""
    model, dimensions = _check(model, dimensions)
    digest = hashlib.blake2b(f"{model}\x00{dimensions}".encode(), digest_size=6).hexdigest()
    return f"{INDEX_PREFIX}{dimensions}_{digest}"


def embedder_predicate(alias: str, model: str, dimensions: int) -> str:
    """``<alias>.model = '<model>' AND <alias>.dimensions = <width>``: the indexes' own predicate."""
    model, dimensions = _check(model, dimensions)
    prefix = f"{alias}." if alias else ""
    return f"{prefix}model = '{model}' AND {prefix}dimensions = {dimensions}"


def distance_sql(alias: str, dimensions: int, operand: str = "%s") -> str:
    """Cosine distance between the row's vector and ``operand`` (by default a ``%s`` parameter; any
    expression that does not depend on the row), as the index computes it."""
    dimensions = int(dimensions)
    return f"({alias}.embedding::halfvec({dimensions})) <=> {operand}::halfvec({dimensions})"


def index_exists(cursor: Any, name: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
    return cursor.fetchone() is not None


def ensure_index(model: str, dimensions: int, *, using: Any = None) -> str:
    """Create the HNSW index of ``model`` at ``dimensions`` unless it exists; returns its name.

    Inside a transaction the build holds a SHARE lock on the table (writes wait) until commit, so it
    is cheap only while the embedder has few rows: callers make it before storing the first ones.
    """
    name = index_name(model, dimensions)
    if name in _known:
        return name
    conn = using or connection
    with _lock, conn.cursor() as cursor:
        if not index_exists(cursor, name):
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} USING hnsw "
                f"((embedding::halfvec({dimensions})) halfvec_cosine_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
                f"WHERE {embedder_predicate('', model, dimensions)}"
            )
    if conn.in_atomic_block:  # a rollback would take the new index with it: remember it once committed
        transaction.on_commit(lambda: _known.add(name), using=conn.alias)
    else:
        _known.add(name)
    return name


def stored_embedders(using: Any = None) -> list[tuple[str, int]]:
    """The (model, width) pairs that have vectors in the table."""
    conn = using or connection
    with conn.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT model, dimensions FROM {TABLE}")
        return [(row[0], int(row[1])) for row in cursor.fetchall()]


def forget_known_indexes() -> None:
    """Forget which indexes this process has seen (tests that drop them)."""
    _known.clear()
