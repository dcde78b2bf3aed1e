"""DocuMind's database backend: django-prometheus's PostgreSQL backend (queries, durations and errors for
/metrics), whose connection pool checks a connection with a round trip only when it may have gone bad.

With ``CONN_HEALTH_CHECKS`` and a pool, Django has the pool run psycopg's ``check_connection``, which
sends an empty query every time a connection leaves the pool, that is once per request that touches
the database: a round trip of its own before the request's first statement. :func:`check` sends it
only when the connection was last handed out more than :data:`RECENT_SECONDS` ago, or when the server
has written to it while it sat idle (an idle connection in autocommit is sent nothing; when the server
ends a session, by a restart, ``pg_terminate_backend`` or ``idle_session_timeout``, it says so and
closes the socket, which then reads). A connection that fails the check is thrown away by the pool,
which hands out another: the request never sees it.

What it gives up: a connection cut without a word (a host gone from the network, a half-open TCP
session) within seconds of its last use is found by the request's own statement, which fails, and
not by the check; the check's empty query would have waited on the same dead socket.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from typing import Any

from django_prometheus.db.backends.postgresql import base
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

RECENT_SECONDS = 5.0  # handed out this recently and silent since: taken as healthy without a round trip

_handed_out: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        """Django's pool, checking connections with :func:`check` where Django would use psycopg's check.

        Django passes the check to the pool's constructor and offers no way to choose it; the pool keeps
        it in ``_check`` (psycopg-pool is pinned, and tests/foundation/test_db_pool.py fails if it moves)."""
        pool = super().pool
        if pool is not None and pool._check is ConnectionPool.check_connection:
            pool._check = check
        return pool


def check(conn: Any) -> None:
    """The pool's ``check``: return quietly if ``conn`` may be handed out, raise if it is broken."""
    now = time.monotonic()
    with _lock:
        last = _handed_out.get(conn)
        _handed_out[conn] = now
    if last is not None and now - last < RECENT_SECONDS and not server_spoke(conn):
        return
    ConnectionPool.check_connection(conn)


def server_spoke(conn: Any) -> bool:
    """Whether the server has written to ``conn``'s socket since it went idle, or the connection is not
    plainly idle (closed, broken, in a transaction): anything but quiet calls for the full check."""
    if conn.closed or conn.broken or conn.pgconn.transaction_status != TransactionStatus.IDLE:
        return True
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
