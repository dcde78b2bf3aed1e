"""The real ``make run`` path (scripts/run.py) on a fresh var/ folder: ready over HTTP, then Ctrl-C or SIGTERM.

It starts its own embedded PostgreSQL, migrates, creates the demo tenant, serves with daphne, runs a
Celery worker (prefork, beat embedded), and on SIGINT or SIGTERM must exit 0 and leave no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings

from benchmarks._common import free_port

pytestmark = pytest.mark.slow

BASE_DIR = Path(settings.BASE_DIR)


def get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def run_env(var_dir: Path) -> dict[str, str]:
    dropped = {
        "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMBEDDED_PGDATA", "EMBEDDED_PG_CLEANUP", "CELERY_BROKER_DIR",
        "MEDIA_ROOT", "DJANGO_SETTINGS_MODULE", "XDG_RUNTIME_DIR", "DOCUMIND_TEST_ROOT", "DOCUMIND_TEST_SUBPROCESS",
        "DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "DJANGO_DEBUG",
        "WEBHOOK_SECRET_KEYS",
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(DOCUMIND_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", DEMO_ADMIN_PASSWORD="")
    return env


@pytest.fixture
def run_root() -> Iterator[Path]:
    """A folder for make run's var/ outside pytest's: the embedded PostgreSQL runs as another user, and
    every pytest session on the machine makes ``/tmp/pytest-of-<user>`` private again when it starts."""
    folder = Path(tempfile.mkdtemp(prefix="documind-make-run-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_make_run(folder: Path) -> tuple[subprocess.Popen[bytes], int, Path, Path]:
    """``scripts/run.py`` on a fresh var/ and a free port: (process, port, var folder, log file)."""
    var_dir = folder / "var"
    port = free_port()
    log_path = folder / "run.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "scripts/run.py", "--port", str(port)], cwd=BASE_DIR, env=run_env(var_dir),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return process, port, var_dir, log_path


def wait_ready(process: subprocess.Popen[bytes], base: str, log_path: Path) -> bytes:
    """The body of the first 200 from ``/api/v1/health/ready`` (fails if make run exits first)."""
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()[-4000:]
        try:
            status, body, _ = get(f"{base}/api/v1/health/ready")
        except OSError:
            status = None
        if status == 200:
            return body
        time.sleep(0.5)
    raise AssertionError(f"make run was not ready in 240 s:\n{log_path.read_text()[-4000:]}")


def postmaster_of(var_dir: Path) -> psutil.Process:
    pid_file = var_dir / "pgdata" / "postmaster.pid"
    return psutil.Process(int(pid_file.read_text().splitlines()[0]))


def kill_leftovers(process: subprocess.Popen[bytes], descendants: list[psutil.Process], var_dir: Path) -> None:
    """After a failure: kill what make run should have stopped (its children live in groups of their own)."""
    with contextlib.suppress(psutil.Error):
        descendants = descendants + psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
        postmaster_of(var_dir).send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown


def assert_nothing_left(
    descendants: list[psutil.Process], postmaster: psutil.Process | None, var_dir: Path, port: int
) -> None:
    """No child of make run, no PostgreSQL of its var/, no process naming its var/, nothing on its port."""
    deadline = time.monotonic() + 5
    while True:
        alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    assert postmaster is not None and (not postmaster.is_running() or postmaster.status() == psutil.STATUS_ZOMBIE)
    leftovers = [
        p.info for p in psutil.process_iter(["pid", "cmdline"]) if str(var_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, leftovers
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_make_run_serves_then_stops_everything_on_ctrl_c(run_root: Path) -> None:
    process, port, var_dir, log_path = start_make_run(run_root)
    base = f"http://127.0.0.1:{port}"
    descendants: list[psutil.Process] = []
    postmaster: psutil.Process | None = None
    try:
        ready = json.loads(wait_ready(process, base, log_path))
        assert set(ready["checks"]) == {"database", "cache", "broker", "channel_layer"}
        assert ready["checks"]["broker"]["transport"] == "filesystem"
        assert ready["checks"]["channel_layer"]["backend"] == "PostgresChannelLayer"

        # the docs page and its assets are served by daphne itself
        status, _, _ = get(f"{base}/docs")
        assert status == 200
        assert get(f"{base}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")[0] == 200

        # the demo tenant exists and the printed password is the one kept under var/
        output = log_path.read_text()
        password = (var_dir / "demo-admin-password").read_text().strip()
        assert "admin@demo.local" in output and password in output
        assert "X-Tenant-ID: demo" in output

        # the signing keys were made for this install, readable by the owner only
        for name in ("secret-key", "jwt-signing-key"):
            assert (var_dir / name).stat().st_mode & 0o777 == 0o600, name

        # our daphne entry point and the Celery worker (beat embedded) run as children, PostgreSQL on its own
        descendants = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in descendants)
        assert "-m config.serve" in names and "celery" in names and " -B" in names, names
        postmaster = postmaster_of(var_dir)
        assert postmaster.is_running()

        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        output = log_path.read_text()
        assert code == 0, output[-4000:]
        assert "PostgreSQL stopped" in output, output[-4000:]
        assert_nothing_left(descendants, postmaster, var_dir, port)
    except BaseException:
        kill_leftovers(process, descendants, var_dir)
        raise


def test_make_run_stops_everything_on_sigterm(run_root: Path) -> None:
    """What a service manager or ``docker stop`` sends: SIGTERM to make run alone (its children are in
    process groups of their own, so nothing else tells them), while the worker's pool and beat run."""
    process, port, var_dir, log_path = start_make_run(run_root)
    descendants: list[psutil.Process] = []
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log_path)
        # the worker's pool (2 processes) and beat: started by the worker, possibly after ready said 200
        deadline = time.monotonic() + 60
        while True:
            descendants = psutil.Process(process.pid).children(recursive=True)
            pool = [p for p in descendants if p.ppid() != process.pid]  # daphne's and celery's own children
            if len(pool) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(pool) >= 3, [(p.pid, p.cmdline()) for p in descendants]
        postmaster = postmaster_of(var_dir)
        assert all(os.getpgid(p.pid) != os.getpgid(process.pid) for p in descendants)

        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        output = log_path.read_text()
        assert code == 0, output[-4000:]
        assert "SIGTERM received: shutting down" in output, output[-4000:]
        assert "did not stop" not in output, output[-4000:]  # each child stopped on its SIGTERM, no SIGKILL needed
        assert "PostgreSQL stopped" in output, output[-4000:]
        assert_nothing_left(descendants, postmaster, var_dir, port)
    except BaseException:
        kill_leftovers(process, descendants, var_dir)
        raise
