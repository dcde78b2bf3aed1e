"""The database cache used without Redis, with atomic counters.

Django's ``DatabaseCache.incr`` is a ``get`` followed by a ``set``: two requests incrementing the same
key at once both read ``n`` and both write ``n + 1``, so one count is lost. The sign-in code attempt
limit (``accounts.codes``) and django-ratelimit count with ``add`` + ``incr`` and rely on ``incr``
being atomic, as it is in Redis.
"""

from __future__ import annotations

import base64
import itertools
import pickle
from datetime import UTC, datetime
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.redis import RedisCache
from django.db import DatabaseError, connections, models, router
from django.utils.timezone import now as tz_now
from django_prometheus.cache.metrics import (
    django_cache_get_fail_total,
    django_cache_get_total,
    django_cache_hits_total,
    django_cache_misses_total,
)
from redis.exceptions import RedisError

# What a shared cache that cannot be reached raises: Redis (distributed) or the database (embedded).
CACHE_ERRORS: tuple[type[BaseException], ...] = (RedisError, DatabaseError, OSError)

_MISSING = object()
_ADDS = itertools.count(1)  # add() calls in this process (the cache object itself is made per request)


class CacheMetricsMixin:
    """Counts ``get`` calls, hits, misses and failures in django-prometheus's cache series."""

    metrics_backend = "cache"

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        backend = self.metrics_backend
        django_cache_get_total.labels(backend=backend).inc()
        try:
            value = super().get(key, _MISSING, version=version)  # type: ignore[misc]
        except Exception:
            django_cache_get_fail_total.labels(backend=backend).inc()
            raise
        if value is _MISSING:
            django_cache_misses_total.labels(backend=backend).inc()
            return default
        django_cache_hits_total.labels(backend=backend).inc()
        return value


class MeteredRedisCache(CacheMetricsMixin, RedisCache):
    """Django's ``RedisCache`` with the cache series (django-prometheus's own needs django-redis)."""

    metrics_backend = "redis"

    def count_hit(self, key: Any, timeout: int, version: int | None = None) -> int:
        """One more hit of a fixed-window counter, in one round trip: ``SET key 0 NX EX timeout`` (a new
        window, as ``add`` would start it) and ``INCR key`` in one ``MULTI``/``EXEC``, so the two cannot be
        split by the key expiring between them (an ``INCR`` of a missing key would make a counter that
        never expires). django-ratelimit's ``add`` then ``incr`` take two round trips. Django's Redis
        serialiser stores integers as such, so ``get`` reads the count."""
        key = self.make_and_validate_key(key, version=version)
        client = self._cache.get_client(key, write=True)
        with client.pipeline(transaction=True) as pipeline:
            pipeline.set(key, 0, ex=self.get_backend_timeout(timeout), nx=True)
            pipeline.incr(key)
            _, count = pipeline.execute()
        return int(count)


class AtomicDatabaseCache(CacheMetricsMixin, DatabaseCache):
    """``DatabaseCache`` whose ``incr``/``decr`` are atomic read-modify-writes of the cache row.

    The row is read, then rewritten only if it still holds what was read (compare and set, two
    statements and no transaction of their own; a lost race reads again), so concurrent increments
    of one key are all counted (in a caller's transaction the row stays locked until that commits,
    and other increments wait for it). Values keep Django's encoding (pickle, then base64). A missing or expired
    key raises ``ValueError``, as in Django. The key keeps its expiry, as in Redis and memcached:
    Django's own ``incr`` (a plain ``set``) would reset it to the default timeout, which would
    stretch a rate-limit window or a code's attempt counter. ``decr`` is ``incr`` with ``-delta``.
    """

    metrics_backend = "database"
    # ``add`` deletes the expired rows once every this many calls in a process (see ``add``).
    purge_expired_every = 100
    # A count written by :meth:`count_hit`: pickle's protocol 0 ``INT`` opcode (``I<digits>\n.``), which
    # ``pickle.loads`` reads like any other pickle, and which SQL can read and rewrite as text.
    _COUNT_PATTERN = "^I([0-9]+)\n\\.$"

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Django's ``add`` (store unless the key holds a live value; True if stored) in one statement.

        Django's version counts the whole table (``SELECT COUNT(*)``, to cull it), reads the key, and
        inserts in a savepoint that fails when the key exists: five round trips for every rate-limit
        check. Here ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired`` decides atomically (of two
        concurrent adds one wins). Expired rows are deleted every :attr:`purge_expired_every` adds
        instead of Django's cull, which also drops live keys past ``MAX_ENTRIES`` (300 by default),
        counters included.
        """
        connection = connections[router.db_for_write(self.cache_model_class)]
        if connection.vendor != "postgresql":
            return super().add(key, value, timeout, version)
        cache_key = self.make_and_validate_key(key, version=version)
        expires_at = self.get_backend_timeout(timeout)
        expires = datetime.max if expires_at is None else datetime.fromtimestamp(expires_at, tz=UTC)
        now = tz_now().replace(microsecond=0)
        quote_name = connection.ops.quote_name
        table, key_column, value_column, expires_column = (
            quote_name(name) for name in (self._table, "cache_key", "value", "expires")
        )
        encoded = base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1")
        with connection.cursor() as cursor:
            self._purge_now_and_then(cursor, table, expires_column, now)
            cursor.execute(
                f"INSERT INTO {table} AS c ({key_column}, {value_column}, {expires_column}) VALUES (%s, %s, %s) "
                f"ON CONFLICT ({key_column}) DO UPDATE SET {value_column} = EXCLUDED.{value_column}, "
                f"{expires_column} = EXCLUDED.{expires_column} WHERE c.{expires_column} < %s "
                f"RETURNING 1",
                [
                    cache_key,
                    encoded,
                    connection.ops.adapt_datetimefield_value(expires.replace(microsecond=0)),
                    connection.ops.adapt_datetimefield_value(now),
                ],
            )
            return cursor.fetchone() is not None

    def count_hit(self, key: Any, timeout: int, version: int | None = None) -> int:
        """One more hit of a fixed-window counter: ``add(key, 1, timeout)``, or else ``incr(key)``, in one statement.

        The counter of every rate-limited request (``config.throttling``); django-ratelimit's own
        ``add`` then ``incr`` take three round trips here. One ``INSERT ... ON CONFLICT DO UPDATE``
        starts the count at 1 when the key is missing or expired (a new window, as ``add`` would) and
        otherwise adds 1 to it in SQL under the row's lock, keeping its expiry (as ``incr`` does). The
        count is stored as pickle's text ``INT`` (:attr:`_COUNT_PATTERN`) so that SQL can add to it;
        ``get`` reads it as any other value. A live row in another encoding (written by ``incr``) is
        left to :meth:`incr` (no row comes back from the statement).
        """
        connection = connections[router.db_for_write(self.cache_model_class)]
        if connection.vendor != "postgresql":
            return self.incr(key, version=version) if not self.add(key, 1, timeout, version) else 1
        cache_key = self.make_and_validate_key(key, version=version)
        now = tz_now().replace(microsecond=0)
        expires = datetime.fromtimestamp(self.get_backend_timeout(timeout), tz=UTC).replace(microsecond=0)
        quote_name = connection.ops.quote_name
        table, key_column, value_column, expires_column = (
            quote_name(name) for name in (self._table, "cache_key", "value", "expires")
        )
        digits = f"substring(encode(decode(c.{value_column}, 'base64'), 'escape') from %(pattern)s)"
        at = {"now": connection.ops.adapt_datetimefield_value(now), "pattern": self._COUNT_PATTERN}
        with connection.cursor() as cursor:
            self._purge_now_and_then(cursor, table, expires_column, now)
            cursor.execute(
                f"{self._async_commit(connection)} INSERT INTO {table} AS c ({key_column}, {value_column},"
                f" {expires_column}) SELECT %(key)s, %(one)s, %(expires)s FROM commit_mode"
                f" ON CONFLICT ({key_column}) DO UPDATE SET"
                f" {value_column} = CASE WHEN c.{expires_column} < %(now)s THEN EXCLUDED.{value_column}"
                f" ELSE encode(convert_to('I' || ({digits}::bigint + 1) || chr(10) || '.', 'UTF8'), 'base64') END,"
                f" {expires_column} = CASE WHEN c.{expires_column} < %(now)s THEN EXCLUDED.{expires_column}"
                f" ELSE c.{expires_column} END"
                f" WHERE c.{expires_column} < %(now)s OR {digits} IS NOT NULL"
                f" RETURNING c.{value_column}",
                {
                    **at,
                    "key": cache_key,
                    "one": base64.b64encode(b"I1\n.").decode("latin1"),
                    "expires": connection.ops.adapt_datetimefield_value(expires),
                },
            )
            row = cursor.fetchone()
        if row is None:
            return self.incr(key, version=version)
        return pickle.loads(base64.b64decode(connection.ops.process_clob(row[0]).encode()))

    def _purge_now_and_then(self, cursor: Any, table: str, expires_column: str, now: datetime) -> None:
        """Delete the expired rows on every :attr:`purge_expired_every`-th write of this process."""
        if next(_ADDS) % self.purge_expired_every == 0:
            cursor.execute(f"DELETE FROM {table} WHERE {expires_column} < %s", [now])

    @staticmethod
    def _async_commit(connection: Any) -> str:
        """The CTE ``commit_mode`` that :meth:`count_hit`'s upsert selects from.

        A count needs no durable commit: when the upsert is its own transaction (autocommit), it is
        committed without waiting for the WAL to reach the disk (``synchronous_commit`` off for that
        transaction only; a crash may lose the last few hundred ms of counts). Inside a caller's
        transaction the setting would reach the caller's writes too, so there it is left alone.
        """
        if connection.in_atomic_block:
            return "WITH commit_mode AS (SELECT 1)"
        return "WITH commit_mode AS (SELECT set_config('synchronous_commit', 'off', true))"

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        cache_key = self.make_and_validate_key(key, version=version)
        connection = connections[router.db_for_write(self.cache_model_class)]
        quote_name = connection.ops.quote_name
        table, key_column, value_column, expires_column = (
            quote_name(name) for name in (self._table, "cache_key", "value", "expires")
        )
        with connection.cursor() as cursor:
            while True:
                cursor.execute(
                    f"SELECT {value_column}, {expires_column} FROM {table} WHERE {key_column} = %s", [cache_key]
                )
                row = cursor.fetchone()
                if row is None or self._expired(connection, row[1]):
                    raise ValueError(f"Key '{key}' not found")
                value = pickle.loads(base64.b64decode(connection.ops.process_clob(row[0]).encode()))
                new_value = value + delta
                encoded = base64.b64encode(pickle.dumps(new_value, self.pickle_protocol)).decode("latin1")
                # Compare and set: written only over the row as read. Otherwise another incr (or a new
                # window's add) came first; read again. Waits for a row another transaction holds.
                cursor.execute(
                    f"UPDATE {table} SET {value_column} = %s "
                    f"WHERE {key_column} = %s AND {value_column} = %s AND {expires_column} = %s",
                    [encoded, cache_key, row[0], row[1]],
                )
                if cursor.rowcount == 1:
                    return new_value

    @staticmethod
    def _expired(connection: Any, expires: Any) -> bool:
        """Whether a row's ``expires`` is past, read the way ``DatabaseCache.get_many`` reads it."""
        expression = models.Expression(output_field=models.DateTimeField())
        for converter in connection.ops.get_db_converters(expression) + expression.get_db_converters(connection):
            expires = converter(expires, expression, connection)
        return expires < tz_now()
