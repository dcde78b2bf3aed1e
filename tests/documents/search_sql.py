"""Looking inside a search's one round trip: a statement of the test's own, run just before the semantic
statement in the same batch (so on the same connection, in the same transaction, under the same planner
settings), and the EXPLAIN ANALYZE of the semantic statement as the search ran it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

Statement = tuple[str, list[Any]]


def before_semantic(monkeypatch: pytest.MonkeyPatch, extra: Callable[[Statement], Statement]) -> list[list[Any]]:
    """Make every search run ``extra(semantic statement)`` just before its semantic statement; returns the
    list that the rows of each such run are appended to (the search itself gets its own results)."""
    from documents import search

    seen: list[list[Any]] = []
    original = search.run_batch

    def spy(statements: list[Statement]) -> list[list[Any]]:
        at = next((i for i, (sql, _) in enumerate(statements) if "<=>" in sql), None)
        if at is None:
            return original(statements)
        results = original([*statements[:at], extra(statements[at]), *statements[at:]])
        seen.append(results.pop(at))
        return results

    monkeypatch.setattr(search, "run_batch", spy)
    return seen


def explain_semantic(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """EXPLAIN ANALYZE of each search's semantic statement (its rows: one line of the plan each)."""
    return before_semantic(
        monkeypatch,
        lambda statement: ("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement[0], statement[1]),
    )


def ran(plan: list[Any], index: str) -> bool:
    """Whether the plan scanned ``index`` (a node that names it and was executed)."""
    return any(index in row[0] and "never executed" not in row[0] for row in plan)


@contextlib.contextmanager
def round_trips() -> Iterator[list[int]]:
    """Count the round trips on this thread's database connection inside the block: the backend's
    ReadyForQuery messages in libpq's protocol trace (one ends every simple query and every Sync,
    whatever the code above psycopg did: Django cursor, raw cursor, implicit BEGIN)."""
    with backend_messages("ReadyForQuery") as counted:
        yield counted


@contextlib.contextmanager
def backend_messages(message: str) -> Iterator[list[int]]:
    """Count the backend's ``message`` messages (libpq's names: ``ReadyForQuery``, ``RowDescription``: one
    for each statement that returns rows) on this thread's database connection inside the block."""
    from django.db import connection
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    counted: list[int] = []
    with tempfile.TemporaryFile("w+") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield counted
        finally:
            pgconn.untrace()
            trace.seek(0)
            counted.append(sum(line.startswith("B\t") and f"\t{message}" in line for line in trace))
