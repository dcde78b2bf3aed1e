"""Attack: a huge request body. Daphne alone reads all of it before the app runs (1 GiB -> +750 MB RSS).

Our entry point (``python -m config.serve``, used by ``make run``, the Dockerfile and compose)
refuses a declared ``Content-Length`` over the route's limit before reading the body, and cuts a
chunked body at the limit; the server's RSS stays flat while an attacker keeps sending.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from config.bodylimits import UPLOAD_FORM_OVERHEAD, body_limit, upload_limit
from tests.security.server import RunningServer, read_response, running_server

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
# The server may grow this much while being attacked (allocator noise, one 64 KiB read at a time).
RSS_SLACK = 40 * MIB


class RssWatch:
    """Samples a process's RSS every 20 ms on a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.fixture
def server(transactional_db: None, tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[RunningServer]:
    with running_server(tmp_path, subprocess_env) as running:
        # Warm up: the first requests import and cache things that would look like growth.
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", running.port)) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                read_response(sock)
        yield running


def send_until_refused(sock: socket.socket, total: int, chunk: bytes, *, chunked: bool = False) -> int:
    """Send up to ``total`` bytes of body (stopping when the server stops reading); returns how many went."""
    sent = 0
    sock.settimeout(10)
    try:
        while sent < total:
            piece = chunk if not chunked else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            sock.sendall(piece)
            sent += len(chunk)
    except OSError:  # reset or timeout once the server gave up on us: what we want
        pass
    return sent


def assert_refusal(status: int, headers: dict[str, str], body: bytes, limit: int) -> None:
    assert status == 413, (status, body[:500])
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["type"] == "payload_too_large"
    assert error["details"]["limit_bytes"] == limit
    assert error["request_id"] == headers["x-request-id"]


def test_declared_gigabyte_is_refused_before_its_body_and_memory_stays_flat(server: RunningServer) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    with RssWatch(server.process.pid) as rss, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: attack-0001\r\nContent-Length: 1073741824\r\n\r\n"
        )
        # The answer comes before a single byte of the body was sent.
        status, headers, body = read_response(sock)
        assert_refusal(status, headers, body, limit)
        assert headers["x-request-id"] == "attack-0001"
        # The attacker keeps sending anyway: it is read and thrown away, then the connection is cut.
        send_until_refused(sock, 256 * MIB, b"x" * MIB)
    assert rss.growth < RSS_SLACK, f"server RSS grew by {rss.growth / MIB:.0f} MiB"


def test_chunked_body_is_cut_at_the_limit_and_memory_stays_flat(server: RunningServer) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    with RssWatch(server.process.pid) as rss, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: acme\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # Send 1 MiB chunks until the answer shows up: it must come right after the limit is passed.
        sent = 0
        while sent < 256 * MIB and not select.select([sock], [], [], 0.05)[0]:
            sock.sendall(f"{MIB:x}\r\n".encode() + b"y" * MIB + b"\r\n")
            sent += MIB
        status, headers, body = read_response(sock)
        send_until_refused(sock, 128 * MIB, b"y" * MIB, chunked=True)  # the attacker carries on regardless
    assert_refusal(status, headers, body, limit)
    assert sent <= limit + 4 * MIB, f"answered only after {sent / MIB:.0f} MiB"
    assert rss.growth < RSS_SLACK, f"server RSS grew by {rss.growth / MIB:.0f} MiB"


def test_uploads_get_their_own_limit(server: RunningServer) -> None:
    limit = upload_limit()
    assert limit == settings.MAX_UPLOAD_MB * MIB + UPLOAD_FORM_OVERHEAD
    assert body_limit("POST", "/api/v1/documents/") == body_limit("POST", "/api/v1/documents") == limit
    assert body_limit("PATCH", "/api/v1/documents/") == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert body_limit("POST", "/api/v1/documents/x/reprocess/") == settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    # Over the upload limit: refused from the header.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /api/v1/documents/ HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: acme\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n" + f"Content-Length: {limit + 1}\r\n\r\n".encode()
        )
        assert_refusal(*read_response(sock), limit)

    # Over the general limit but within the upload's: the body goes through to the app, which answers.
    size = 8 * MIB
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /api/v1/documents/ HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: no-such-tenant\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n" + f"Content-Length: {size}\r\n\r\n".encode()
        )
        send_until_refused(sock, size, b"z" * MIB)
        status, _, body = read_response(sock, timeout=30)
    assert status == 404 and json.loads(body)["error"]["type"] == "tenant_not_found", server.output()[-3000:]


def test_small_bodies_and_keep_alive_still_work(server: RunningServer) -> None:
    payload = json.dumps({"email": "nobody@acme.test", "password": "x"}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(2):  # two requests on one connection
            sock.sendall(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: no-such-tenant\r\n"
                b"Content-Type: application/json\r\n" + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
            )
            status, _, body = read_response(sock)
            assert status == 404, body
