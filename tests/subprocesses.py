"""Child processes that share this test session's database, broker and media folder.

* :func:`build_subprocess_env` / the ``subprocess_env`` fixture: the environment a child needs to use the
  session's test database (``DATABASE_URL`` built from the live connection settings), its Celery
  broker folder (or Redis, when ``REDIS_URL`` is set) and ``DOCUMIND_TEST_SUBPROCESS=1``.
* :func:`celery_worker` / the ``celery_worker_proc`` and ``start_celery_worker`` fixtures: a real
  ``celery -A config worker`` subprocess, proven ready by a ``health.ping`` round trip, stopped
  (and its process group killed) afterwards. Its output is kept: ``worker.output()``.
  :func:`launch_celery_worker` starts one outside a ``with`` block (stop it with :func:`stop_process_group`).

* :func:`daphne_server`: ``python -m config.serve config.asgi:application`` (daphne with the redacting
  access log the image runs) on a free local port, yielding its base URL once
  ``/healthz`` answers; its output is shown when the block fails.

A worker only sees committed rows: tests that create rows for it need ``transactional_db``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings

from benchmarks._common import free_port

BASE_DIR = Path(settings.BASE_DIR)


def database_url(db: dict[str, Any]) -> str:
    """A libpq URL for a Django ``DATABASES`` entry (unix-socket hosts, and their port, go in ``?host=``).

    The host may also come from ``OPTIONS`` (a ``DATABASE_URL`` with ``?host=/path``).
    """
    user = quote(db.get("USER") or "", safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(db.get("HOST") or (db.get("OPTIONS") or {}).get("host") or "")
    port = str(db.get("PORT") or "")
    name = quote(db["NAME"], safe="")
    if host.startswith("/"):
        return f"postgresql://{auth}/{name}?host={quote(host)}" + (f"&{urlencode({'port': port})}" if port else "")
    return f"postgresql://{auth}{host}{':' + port if port else ''}/{name}"


def build_subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that must work on this session's test database."""
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if k not in {"EMBEDDED_PGDATA", "EMBEDDED_PG_CLEANUP"}}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DOCUMIND_TEST_SUBPROCESS="1",
        DATABASE_URL=database_url(connection.settings_dict),
        CELERY_BROKER_DIR=str(settings.CELERY_BROKER_DIR),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONUNBUFFERED="1",
        # Tests delete and recreate their tenants ("acme"...) with new ids from one test to the next, and
        # a child gets no signal of it: with its memory of tenants on it would serve the previous test's
        # "acme" for TENANT_CACHE_SECONDS (tenants.lookup; tests/tenants/test_lookup.py covers that memory).
        TENANT_CACHE_SECONDS="0",
    )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    """A running Celery worker subprocess."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for_ping(
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    send: Callable[[str], Any] | None = None,
    cache: Any = None,
) -> None:
    """Send ``health.ping`` and wait until a worker has answered it in the shared cache.

    By default through this process's Celery app and cache; ``send``/``cache`` reach other ones.
    """
    from django.core.cache import cache as default_cache

    from health.tasks import ping, ping_key

    cache = cache or default_cache
    token = uuid.uuid4().hex
    (send or ping.delay)(token)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cache.get(ping_key(token)) is not None:
            return
        if not alive():
            raise RuntimeError("the worker exited before answering a ping")
        time.sleep(0.2)
    raise TimeoutError(f"no worker answered health.ping within {timeout:.0f}s")


def purge_queue() -> None:
    """Drop messages left in the broker by earlier tests, so a new worker starts on a clean queue."""
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(app.conf.task_default_queue)


def launch_celery_worker(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    pool: str = "solo",
    concurrency: int = 1,
    log_format: str = "json",
    log_level: str = "INFO",
    ready_timeout: float = 60.0,
    purge: bool = True,
    ping_send: Callable[[str], Any] | None = None,
    ping_cache: Any = None,
    include: Sequence[str] = (),
    queues: Sequence[str] = (),
    hostname: str | None = None,
) -> WorkerProcess:
    """Start ``celery -A config worker`` with the session's settings and return it once it answers a ping.

    ``pool="solo"`` is fastest to start; use ``"prefork"`` to exercise time limits or concurrency.
    A worker on another broker (``env``) needs ``ping_send``/``ping_cache`` that reach it, and
    ``purge=False``; one on other queues (``queues``) needs a ``ping_send`` that sends there.
    ``include`` names extra task modules; ``hostname`` defaults to ``test-<random>@%h``.
    The caller stops it with :func:`stop_process_group` (:func:`celery_worker` does it for a block).
    """
    if purge:
        purge_queue()
    env = dict(env or build_subprocess_env())
    env.setdefault("LOG_FORMAT", log_format)
    env.setdefault("LOG_LEVEL", log_level)
    log_path = tmp_path / f"celery-worker-{uuid.uuid4().hex[:8]}.log"
    argv = [
        sys.executable, "-m", "celery", "-A", "config", "worker", "-P", pool, "-c", str(concurrency),
        "-l", log_level, "-n", hostname or f"test-{uuid.uuid4().hex[:8]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if include:
        argv += ["--include", ",".join(include)]
    if queues:
        argv += ["--queues", ",".join(queues)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = WorkerProcess(process, log_path)
    try:
        wait_for_ping(timeout=ready_timeout, alive=lambda: process.poll() is None, send=ping_send, cache=ping_cache)
    except BaseException as exc:
        stop_process_group(process)
        if isinstance(exc, RuntimeError | TimeoutError):
            raise RuntimeError(f"{exc}; worker output:\n{worker.output()[-3000:]}") from exc
        raise
    return worker


@contextlib.contextmanager
def celery_worker(tmp_path: Path, **options: Any) -> Iterator[WorkerProcess]:
    """Run ``celery -A config worker`` until the block ends (``options``: see :func:`launch_celery_worker`)."""
    worker = launch_celery_worker(tmp_path, **options)
    try:
        yield worker
    finally:
        stop_process_group(worker.process)


def stop_process_group(process: subprocess.Popen[bytes], *, grace: float = 15.0) -> None:
    """SIGTERM the process, then SIGKILL its whole group if anything is left."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


@pytest.fixture
def subprocess_env(django_db_setup: Any, django_db_blocker: Any) -> dict[str, str]:
    """Environment for a child process on the session's test database (see :func:`build_subprocess_env`)."""
    with django_db_blocker.unblock():
        return build_subprocess_env()


@pytest.fixture
def start_celery_worker(
    db: Any, tmp_path: Path
) -> Iterator[Callable[..., contextlib.AbstractContextManager[WorkerProcess]]]:
    """``with start_celery_worker(pool="prefork", env=...) as worker:`` — see :func:`celery_worker`."""

    def start(**kwargs: Any) -> contextlib.AbstractContextManager[WorkerProcess]:
        return celery_worker(tmp_path, **kwargs)

    yield start


@pytest.fixture
def celery_worker_proc(db: Any, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A ready ``celery -A config worker -P solo`` on the session's database and broker."""
    with celery_worker(tmp_path) as worker:
        yield worker


@contextlib.contextmanager
def daphne_server(env: dict[str, str], log: Path, *, timeout: float = 60.0, args: Sequence[str] = ()) -> Iterator[str]:
    """daphne (``python -m config.serve``) serving ``config.asgi:application`` on a free port until the block
    ends; yields its base URL.

    ``env`` is the child's whole environment (usually :func:`build_subprocess_env`); its output goes to
    ``log`` and is written to stderr when the block fails; ``args`` are extra daphne options.
    """
    import httpx

    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "config.serve", "-b", "127.0.0.1", "-p", str(port), *args, "config.asgi:application"],
            cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        yield base
    except BaseException:
        sys.stderr.write("daphne output:\n" + log.read_text(errors="replace")[-5000:])  # shown with the failure
        raise
    finally:
        stop_process_group(process)
