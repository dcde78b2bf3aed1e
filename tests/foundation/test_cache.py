"""The embedded (database) cache: Django's semantics, plus ``incr``/``decr`` that are atomic on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import BaseCache, cache, caches
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.cache import AtomicDatabaseCache

TABLE = "documind_cache"


def expires_of(backend: BaseCache, key: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT expires FROM {TABLE} WHERE cache_key = %s", [backend.make_key(key)])
        return cursor.fetchone()[0]


def all_at_once(hit: Callable[[], Any], *, threads: int = 8, each: int = 25) -> list[Any]:
    """``threads`` threads, each on its own connection, call ``hit`` ``each`` times at once; what it returned."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []
    seen: list[Any] = []

    def work() -> None:
        try:
            barrier.wait()
            for _ in range(each):
                seen.append(hit())
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    return seen


def concurrent_increments(backend: BaseCache, key: str, *, threads: int = 8, each: int = 25) -> Any:
    """``threads`` threads, each on its own connection, ``incr`` the same key ``each`` times at once."""
    backend.set(key, 0, 600)
    all_at_once(lambda: backend.incr(key), threads=threads, each=each)
    return backend.get(key)


def test_the_embedded_cache_is_the_atomic_backend() -> None:
    assert isinstance(caches["default"], AtomicDatabaseCache)


@pytest.mark.django_db
def test_incr_and_decr_keep_djangos_semantics() -> None:
    cache.set("n", 5, 600)
    assert cache.incr("n") == 6
    assert cache.incr("n", 10) == 16
    assert cache.decr("n") == 15
    assert cache.decr("n", 20) == -5
    assert cache.get("n") == -5  # stored in Django's encoding: a plain get reads it
    cache.set("n", 1, 600, version=2)
    assert cache.incr("n", version=2) == 2 and cache.get("n") == -5
    # the same rows as Django's backend: the stock DatabaseCache reads what this one wrote
    from django.core.cache.backends.db import DatabaseCache

    assert DatabaseCache(TABLE, {}).get("n") == -5
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("missing")
    assert cache.get("missing") is None  # incr does not create the key


@pytest.mark.django_db
def test_an_expired_key_cannot_be_incremented() -> None:
    cache.set("old", 3, 600)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET expires = %s WHERE cache_key = %s",
            [timezone.now() - timedelta(seconds=1), cache.make_key("old")],
        )
    with pytest.raises(ValueError, match="not found"):
        cache.incr("old")
    assert cache.get("old") is None
    # and add() takes an expired key over, as the counters (add, then incr) expect
    assert cache.add("old", 0, 600) and cache.incr("old") == 1


@pytest.mark.django_db
def test_incr_keeps_the_expiry() -> None:
    cache.set("window", 0, 30)  # e.g. a rate-limit window: counting must not stretch it
    before = expires_of(cache, "window")
    assert before < timezone.now() + timedelta(seconds=31)
    cache.incr("window")
    cache.decr("window", 2)
    assert expires_of(cache, "window") == before
    cache.set("forever", 1, None)
    cache.incr("forever")
    assert expires_of(cache, "forever").year == 9999


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_are_all_counted() -> None:
    """8 threads x 25 increments of one key: exactly 200 (Django's own DatabaseCache loses some)."""
    assert concurrent_increments(caches["default"], "hits", threads=8, each=25) == 200


@pytest.mark.django_db(transaction=True)
def test_incr_inside_a_transaction_holds_the_row() -> None:
    """In a caller's transaction the row stays locked until the commit: a concurrent incr waits for it
    (observed in PostgreSQL's lock table, not guessed with a sleep), then counts on top."""
    from django.db import connection, transaction

    cache.set("t", 0, 600)
    backend: list[int] = []
    ready = threading.Event()
    seen: list[Any] = []

    def other() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend.append(cursor.fetchone()[0])
            ready.set()
            seen.append(cache.incr("t"))
        except BaseException as exc:
            seen.append(exc)
        finally:
            ready.set()
            connections.close_all()

    with transaction.atomic():
        assert cache.incr("t") == 1
        worker = threading.Thread(target=other)
        worker.start()
        assert ready.wait(30) and backend, seen
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            mine = cursor.fetchone()[0]
            deadline = time.monotonic() + 30
            blocked = False
            while not blocked and time.monotonic() < deadline:
                cursor.execute("SELECT %s = ANY(pg_blocking_pids(%s))", [mine, backend[0]])
                blocked = cursor.fetchone()[0]
                if not blocked:
                    time.sleep(0.01)
        assert blocked, "the other incr never waited on this transaction's row lock"
        assert seen == []  # still waiting: nothing counted yet
    worker.join(30)
    assert seen == [2] and cache.get("t") == 2


def _expire(backend: BaseCache, key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET expires = %s WHERE cache_key = %s",
            [timezone.now() - timedelta(seconds=1), backend.make_key(key)],
        )


@pytest.mark.django_db
def test_add_stores_only_over_a_missing_or_expired_key() -> None:
    assert cache.add("a", 1, 600) is True
    assert cache.add("a", 2, 600) is False
    assert cache.get("a") == 1
    before = expires_of(cache, "a")
    _expire(cache, "a")
    assert cache.add("a", 3, 30) is True  # takes the expired key over, with the new expiry
    assert cache.get("a") == 3 and expires_of(cache, "a") < before
    assert cache.add("forever", {"x": 1}, None) is True and expires_of(cache, "forever").year == 9999
    assert cache.get("forever") == {"x": 1}
    from django.core.cache.backends.db import DatabaseCache

    assert DatabaseCache(TABLE, {}).get("a") == 3  # Django's encoding


@pytest.mark.django_db
def test_add_is_one_statement_and_purges_expired_rows_now_and_then(
    django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = caches["default"]
    monkeypatch.setattr(backend, "purge_expired_every", 10**9)
    cache.set("stale", 1, 600)
    _expire(cache, "stale")
    with django_assert_num_queries(1):
        backend.add("k1", 0, 600)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE cache_key = %s", [cache.make_key("stale")])
        assert cursor.fetchone()[0] == 1  # left alone until a purge
    monkeypatch.setattr(backend, "purge_expired_every", 1)
    with django_assert_num_queries(2):
        backend.add("k2", 0, 600)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT cache_key FROM {TABLE} ORDER BY cache_key")
        assert [row[0] for row in cursor.fetchall()] == sorted([cache.make_key("k1"), cache.make_key("k2")])


@pytest.mark.django_db(transaction=True)
def test_concurrent_adds_of_one_key_store_it_once() -> None:
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def work(value: int) -> None:
        try:
            barrier.wait()
            results.append((caches["default"].add("once", value, 600), value))
        except BaseException as exc:
            results.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    winners = [value for added, value in results if added]
    assert len(results) == 8 and len(winners) == 1, results
    assert cache.get("once") == winners[0]


@pytest.mark.django_db
def test_a_counter_costs_three_statements(django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate-limit check (django-ratelimit's add, then incr): one upsert, one read, one compare-and-set,
    and no transaction of its own (Django's backend: eight statements and a savepoint each)."""
    backend = caches["default"]
    monkeypatch.setattr(backend, "purge_expired_every", 10**9)  # no purge in this count
    backend.add("counter", 1, 60)
    with django_assert_num_queries(3):
        assert backend.add("counter", 1, 60) is False
        assert backend.incr("counter") == 2


@pytest.mark.django_db
def test_count_hit_counts_a_window_in_one_statement(
    django_assert_num_queries: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate limiter's counter: add(1) on a missing key, else incr, in one statement; the window's
    expiry is kept while it counts, and a plain get (ours or Django's) reads the count."""
    backend = caches["default"]
    monkeypatch.setattr(backend, "purge_expired_every", 10**9)
    with django_assert_num_queries(1):
        assert backend.count_hit("hits", 30) == 1
    before = expires_of(cache, "hits")
    assert timezone.now() + timedelta(seconds=25) < before < timezone.now() + timedelta(seconds=31)
    for expected in range(2, 12):
        with django_assert_num_queries(1):
            assert backend.count_hit("hits", 600) == expected
    assert expires_of(cache, "hits") == before
    assert cache.get("hits") == 11
    from django.core.cache.backends.db import DatabaseCache

    assert DatabaseCache(TABLE, {}).get("hits") == 11
    assert cache.incr("hits") == 12 and backend.count_hit("hits", 30) == 13  # incr and count_hit take turns
    _expire(cache, "hits")
    assert backend.count_hit("hits", 30) == 1  # a new window
    assert expires_of(cache, "hits") > timezone.now()


@pytest.mark.django_db
def test_count_hit_over_a_value_it_did_not_write_falls_back_to_incr() -> None:
    cache.set("other", 41, 600)  # pickled by Django (protocol 5): SQL does not add to it
    assert caches["default"].count_hit("other", 30) == 42
    assert cache.get("other") == 42
    cache.set("big", 2**40, 600)
    assert caches["default"].count_hit("big", 30) == 2**40 + 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_count_hits_are_all_counted() -> None:
    threads, each = 8, 25
    seen = all_at_once(lambda: caches["default"].count_hit("together", 600), threads=threads, each=each)
    assert sorted(seen) == list(range(1, threads * each + 1))  # each hit saw a count of its own
    assert cache.get("together") == threads * each


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_count_hit_commits_its_own_transaction_asynchronously_and_no_one_elses() -> None:
    """A count is not worth a WAL flush: alone (autocommit) its upsert turns synchronous_commit off for its
    own transaction, and the session keeps its setting; inside a caller's transaction it leaves the
    setting alone, or the caller's writes would be committed without waiting for the disk too."""
    backend = caches["default"]
    assert _synchronous_commit() == "on"
    with CaptureQueriesContext(connection) as alone:
        assert backend.count_hit("alone", 30) == 1
    assert "set_config('synchronous_commit', 'off', true)" in alone.captured_queries[-1]["sql"]
    assert _synchronous_commit() == "on"

    with transaction.atomic():
        with CaptureQueriesContext(connection) as inside:
            assert backend.count_hit("inside", 30) == 1
        assert _synchronous_commit() == "on"
    assert "synchronous_commit" not in inside.captured_queries[-1]["sql"]
    assert cache.get("alone") == 1 and cache.get("inside") == 1


@pytest.mark.redis
def test_the_redis_cache_counts_a_window_in_one_round_trip(require_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The distributed mode's rate-limit counter: a new window starts at 1 with its expiry, later hits add 1
    and keep it, a plain get reads the count, concurrent hits are all counted; one round trip each (the
    commands sent to Redis in one write, counted on redis-py's connection)."""
    import uuid

    from redis.connection import Connection

    from config.cache import MeteredRedisCache

    backend = MeteredRedisCache(require_redis, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    client = backend._cache.get_client(write=True)
    assert backend.get("warm-up") is None  # the connection's own handshake is not the counter's
    sends: list[int] = []
    original = Connection.send_packed_command

    def counted(self: Connection, command: Any, check_health: bool = True) -> None:
        sends.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counted)
    assert backend.count_hit("hits", 30) == 1
    assert len(sends) == 1
    key = backend.make_and_validate_key("hits")
    monkeypatch.undo()
    assert 25 <= client.ttl(key) <= 30
    monkeypatch.setattr(Connection, "send_packed_command", counted)
    for expected in range(2, 12):
        assert backend.count_hit("hits", 600) == expected
    assert len(sends) == 11
    monkeypatch.undo()
    assert 25 <= client.ttl(key) <= 30  # the window's expiry is kept while it counts
    assert backend.get("hits") == 11
    client.delete(key)  # the window ended
    assert backend.count_hit("hits", 30) == 1

    threads, each = 8, 25
    seen = all_at_once(lambda: backend.count_hit("together", 600), threads=threads, each=each)
    assert sorted(seen) == list(range(1, threads * each + 1))
    assert backend.get("together") == threads * each
    client.delete(key, backend.make_and_validate_key("together"))
