"""Real webhook receivers on loopback (HTTP and HTTPS with a ``trustme`` certificate) and a guard
that fails a test if anything tries to connect anywhere but loopback."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trustme


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A running receiver: ``url`` (on ``localhost``), what it got, and how it answers (``mode``)."""

    server: ThreadingHTTPServer
    scheme: str
    received: list[Received] = field(default_factory=list)
    mode: str = "ok"  # ok | error | slow | redirect
    delay: float = 2.0

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.port}/hooks/documind"


def _handler(receiver_ref: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            receiver = receiver_ref[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if receiver.mode == "slow":
                time.sleep(receiver.delay)
            if receiver.mode == "redirect":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 500 if receiver.mode == "error" else 200  # "slow": a 200 after ``delay``
            payload = b'{"ok": true}' if status == 200 else b"boom"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def start_receiver(scheme: str = "http", cert: trustme.LeafCert | None = None) -> Receiver:
    ref: list[Receiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    server.daemon_threads = True
    if scheme == "https":
        assert cert is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    receiver = Receiver(server=server, scheme=scheme)
    ref.append(receiver)
    threading.Thread(target=server.serve_forever, daemon=True, name=f"receiver-{scheme}").start()
    return receiver


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def receivers(ca: trustme.CA, tmp_path: Any, settings: Any) -> Iterator[Any]:
    """``receivers("http" | "https", hostname="localhost")``: started receivers, stopped afterwards.

    The test settings let webhooks reach ``localhost`` (the allow-list) and trust the test CA.
    """
    started: list[Receiver] = []
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    settings.WEBHOOK_ALLOWED_HOSTS = ["localhost"]
    settings.WEBHOOK_CA_BUNDLE = str(ca_file)
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 0.5

    def make(scheme: str = "http", hostname: str = "localhost") -> Receiver:
        receiver = start_receiver(scheme, ca.issue_cert(hostname) if scheme == "https" else None)
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection attempt in these tests, and a failure for any off loopback."""
    import socket

    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        attempts.append(address)
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A stub resolver for the webhook sender: names map to the addresses a test chooses."""
    from integrations import netguard

    table: dict[str, list[str]] = {}
    real = netguard.resolver

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return list(table[host])
        if host == "localhost":
            return real(host, port)
        raise OSError(f"no such host in the test's DNS: {host}")

    monkeypatch.setattr(netguard, "resolver", resolve)
    return table
