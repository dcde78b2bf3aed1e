"""The psycopg connection pool per process (``DB_POOL_MAX_SIZE``) in the base and production settings."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(settings.BASE_DIR)

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
    one = cursor.fetchone()[0]
db = settings.DATABASES["default"]
check = getattr(connection.pool, "_check", None)
print(json.dumps({"max_age": db["CONN_MAX_AGE"], "pool": db.get("OPTIONS", {}).get("pool"),
                  "check": check and f"{check.__module__}.{check.__qualname__}",
                  "has_pool": connection.pool is not None, "one": one}))
"""


def run_probe(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("settings_module", ["config.settings.local", "config.settings.production"])
def test_pool_is_on_by_default_and_queries_run_through_it(subprocess_env: dict[str, str], settings_module: str) -> None:
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE=settings_module, DB_POOL_MAX_SIZE="7", DB_POOL_TIMEOUT="3")
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    if settings_module.endswith("production"):
        env.update(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_ALLOWED_HOSTS="api.example.com")
    probe = run_probe(env)
    # A pool refuses persistent connections: production's DB_CONN_MAX_AGE default must not apply.
    assert probe == {
        "max_age": 0,
        "pool": {"min_size": 1, "max_size": 7, "timeout": 3.0},
        "check": "config.db_backend.base.check",  # not psycopg's: a round trip per request (see that module)
        "has_pool": True,
        "one": 1,
    }


def test_pool_off_restores_persistent_connections_in_production(subprocess_env: dict[str, str]) -> None:
    env = dict(
        subprocess_env,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="api.example.com",
        DB_POOL_MAX_SIZE="0",
    )
    probe = run_probe(env)
    assert probe == {"max_age": 60, "pool": None, "check": None, "has_pool": False, "one": 1}


CHECKS = """
import json, tempfile, time, django
django.setup()
import psycopg
from psycopg import pq
from django.db import connection
from config.db_backend import base as db_pool

pool = connection.pool
pool.open(wait=True)

def queries_sent_by(getconn):
    # Query messages (simple protocol) sent on the pool's one connection while getconn() hands it out
    conn = pool.getconn()
    conn.execute("SELECT 1")
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        pool.putconn(conn)
        again = getconn()
        assert again is conn, "the pool has one connection"
        conn.pgconn.untrace()
        trace.seek(0)
        sent = sum(line.startswith("F\t") and "\tQuery\t" in line for line in trace)
    pool.putconn(conn)
    return sent

out = {"recent": queries_sent_by(pool.getconn)}
db_pool.RECENT_SECONDS = 0  # as if it had sat idle
out["idle"] = queries_sent_by(pool.getconn)
db_pool.RECENT_SECONDS = 5.0

conn = pool.getconn()
conn.execute("SELECT 1")
victim = conn.info.backend_pid
pool.putconn(conn)
with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
    other.execute("SELECT pg_terminate_backend(%s)", [victim])
deadline = time.monotonic() + 10
while not db_pool.server_spoke(conn) and time.monotonic() < deadline:
    time.sleep(0.01)
out["terminated_reads"] = db_pool.server_spoke(conn)
with connection.cursor() as cursor:  # a request right after: the pool replaces the dead connection
    cursor.execute("SELECT pg_backend_pid()")
    out["replaced"] = cursor.fetchone()[0] != victim
print(json.dumps(out))
"""


def test_the_pool_checks_a_connection_with_a_round_trip_only_when_it_may_have_gone_bad(
    subprocess_env: dict[str, str],
) -> None:
    """A connection handed out moments ago and silent since goes out without the check's empty query (one
    round trip less per request); one idle for longer gets the query; one the server ended is replaced
    before a request sees it."""
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE="config.settings.local", DB_POOL_MAX_SIZE="1")
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    done = subprocess.run(
        [sys.executable, "-c", CHECKS], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "recent": 0,
        "idle": 1,
        "terminated_reads": True,
        "replaced": True,
    }
