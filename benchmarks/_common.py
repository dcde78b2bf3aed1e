"""Helpers shared by the benchmarks: percentiles, a free port, polling, the database and a server (daphne or uvicorn) to measure.

Not a benchmark itself (``run_all`` skips ``_``-prefixed modules). The scripts import it as
``benchmarks._common`` once the project folder is on ``sys.path`` (daphne imports them as
``benchmarks.<name>`` too).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent

Server = Literal["daphne", "uvicorn"]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (``0.5``, ``0.95``...) of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


def setup_django(var_dir: str, **env: str) -> None:
    """Set Django up on an embedded PostgreSQL of its own under ``var_dir`` (deleted with it), offline
    providers, quiet logs, no rate limit; ``env`` adds or overrides variables."""
    os.environ.update(
        {
            "DOCUMIND_VAR_DIR": var_dir,
            "EMBEDDED_PG_CLEANUP": "delete",
            "MEDIA_ROOT": str(Path(var_dir) / "media"),
            "EMBEDDING_PROVIDER": "hashing",
            "OPENAI_API_KEY": "",
            "LOG_LEVEL": "ERROR",
            "LOG_FORMAT": "console",
            "RATELIMIT_ENABLED": "false",
            **env,
        }
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))  # base settings have no default key
    import django

    django.setup()


def free_port() -> int:
    """A free local TCP port (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; raise ``TimeoutError`` naming ``what``.

    Shared by the benchmarks and the tests' process launchers (``tests/stack.py``).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(interval)


def server_env(**defaults: str) -> dict[str, str]:
    """This process's environment with the server defaults of the benchmarks (local settings, no debug,
    JSON logs) and ``defaults``; what the environment sets wins."""
    env = dict(os.environ)
    for key, value in {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DJANGO_DEBUG": "false",
        "LOG_FORMAT": "json",
        **defaults,
    }.items():
        env.setdefault(key, value)
    return env


@contextlib.contextmanager
def embedded_database(env: dict[str, str], name: str) -> Iterator[None]:
    """Without ``DATABASE_URL`` in ``env``: the embedded PostgreSQL (``EMBEDDED_PGDATA`` or the var folder's),
    with a database ``name``, set as ``env["DATABASE_URL"]`` and held until the block ends."""
    if env.get("DATABASE_URL"):
        yield
        return
    from config.embedded_db import ensure_database, ensure_server, release_server, socket_dir

    var_dir = Path(env.get("DOCUMIND_VAR_DIR", str(BASE_DIR / "var")))
    server = ensure_server(Path(env.get("EMBEDDED_PGDATA", str(var_dir / "pgdata"))))
    try:
        host = socket_dir(server)
        ensure_database(host, name)
        env["DATABASE_URL"] = f"postgresql://postgres@/{name}?host={quote(host)}"
        yield
    finally:
        release_server(server)


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _server_command(server: Server, application: str, port: int) -> list[str]:
    if server == "daphne":
        return [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", application]
    # uvicorn is not a dependency (api.py says how to make it importable); httptools is used if present.
    return [sys.executable, "-m", "uvicorn", application, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--lifespan", "off"]  # fmt: skip


@contextlib.contextmanager
def serve(
    application: str,
    env: dict[str, str],
    *,
    server: Server = "daphne",
    ready: Callable[[int], bool] = _accepts_connections,
    timeout: float = 120,
) -> Iterator[int]:
    """Serve ``application`` (``module:attribute``) with ``server`` on a free local port until the block ends.

    Yields the port once ``ready(port)`` holds (by default: it accepts connections); stops the server
    with SIGTERM, then kills its process group if it has not exited within 20 s.
    """
    port = free_port()
    process = subprocess.Popen(
        _server_command(server, application, port),
        cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{server} exited")
            with contextlib.suppress(Exception):
                if ready(port):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{server} did not start (or the port was taken)")
            time.sleep(0.2)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


async def asgi_request(
    app: Any, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTP request through the ASGI ``app`` in memory (no socket, no HTTP parsing): status and body.

    The client stays connected until the answer is sent (``receive`` then waits), as a real one does.
    """
    import asyncio

    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
        + [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    never = asyncio.Event()
    sent_body = False
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)
