"""Attack: claim another client address (``X-Forwarded-For``) to dodge per-IP limits or fake HTTPS.

The proxy's header counts only when the peer is in ``TRUSTED_PROXIES``; from anyone else every
forwarding header is dropped. The compose proxy (nginx, ``deploy/nginx.conf.template``) overwrites
``X-Forwarded-For`` and repeats the body limits, answering 413 in the envelope.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import RequestFactory

from config.client_ip import forwarded_client, resolve_client_ip
from config.middleware import ClientIPMiddleware
from tests.conftest import make_client
from tests.factories import TenantFactory
from tests.security.server import free_port, read_response, running_server
from tests.subprocesses import stop_process_group

BASE_DIR = Path(settings.BASE_DIR)
LOGIN = "/api/v1/auth/login"
MIB = 1024 * 1024


def seen_by_app(**meta: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def view(request: Any) -> Any:
        seen.update(request.META)
        return None

    ClientIPMiddleware(view)(RequestFactory().get("/", **meta))
    return seen


def test_forwarding_headers_from_an_untrusted_peer_are_dropped(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    meta = seen_by_app(
        REMOTE_ADDR="203.0.113.9",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_REAL_IP="1.2.3.4",
        HTTP_FORWARDED="for=1.2.3.4",
    )
    assert meta["REMOTE_ADDR"] == "203.0.113.9"
    assert not {"HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_REAL_IP", "HTTP_FORWARDED"} & set(meta)


def test_a_trusted_proxy_names_the_client(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.1", "172.31.240.0/24"]
    # The rightmost address the proxies did not add themselves; what the client wrote on the left is ignored.
    meta = seen_by_app(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7, 172.31.240.3")
    assert meta["REMOTE_ADDR"] == "198.51.100.7"
    assert seen_by_app(REMOTE_ADDR="172.31.240.10", HTTP_X_FORWARDED_FOR="2001:db8::1")["REMOTE_ADDR"] == "2001:db8::1"
    assert seen_by_app(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="junk")["REMOTE_ADDR"] == "10.0.0.1"
    assert forwarded_client("") is None
    meta = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_PROTO": "https"}
    resolve_client_ip(meta)
    assert meta["HTTP_X_FORWARDED_PROTO"] == "https"  # kept from a trusted proxy


@pytest.mark.django_db
def test_rotating_x_forwarded_for_does_not_escape_the_sign_in_limit(
    settings: Any, tenant: Any, ratelimit_clock: Any
) -> None:
    # ratelimit_clock: frozen, so that the burst cannot straddle the end of a window
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_AUTH_PER_MINUTE = 3
    settings.TRUSTED_PROXIES = []
    client = make_client(None, tenant)
    statuses = [
        client.post(
            LOGIN, {"email": f"x{i}@acme.test", "password": "guess"}, format="json",
            REMOTE_ADDR="203.0.113.5", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}", HTTP_X_REAL_IP=f"198.51.100.{i}",
        ).status_code
        for i in range(5)
    ]  # fmt: skip
    assert statuses == [401, 401, 401, 429, 429]


@pytest.mark.django_db
@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_trusted_proxy_each_client_has_its_own_sign_in_limit(
    settings: Any, tenant: Any, trusted: bool, ratelimit_clock: Any
) -> None:
    """What TRUSTED_PROXIES is for: behind the proxy, one client over the sign-in limit does not lock
    out the others (their addresses come from its X-Forwarded-For), through the whole middleware
    chain. Without the proxy trusted, everyone behind it shares the proxy's address and its limit."""
    settings.RATELIMIT_ENABLED = True
    settings.RATELIMIT_AUTH_PER_MINUTE = 3
    settings.TRUSTED_PROXIES = ["10.0.0.0/29"] if trusted else []
    client = make_client(None, tenant)

    def attempt(client_address: str) -> int:
        return client.post(
            LOGIN, {"email": "nobody@acme.test", "password": "guess"}, format="json",
            REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR=client_address,
        ).status_code  # fmt: skip

    assert [attempt("198.51.100.1") for _ in range(4)] == [401, 401, 401, 429]
    assert attempt("198.51.100.2") == (401 if trusted else 429)


# --- the compose proxy, for real (Debian's nginx stands in for the official image) ----------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def nginx_missing() -> None:
    if NGINX is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is required in CI (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light): the proxy config is not exercised")


def render_proxy_config(tmp_path: Path, *, upstream_port: int, listen_port: int) -> Path:
    """deploy/nginx.conf.template as the official image renders it, inside a main config of our own."""
    template = (BASE_DIR / "deploy" / "nginx.conf.template").read_text()
    site = (
        template.replace("${DOCUMIND_BODY_LIMIT}", "5m")
        .replace("${DOCUMIND_UPLOAD_BODY_LIMIT}", "26m")
        .replace("server web:8000;", f"server 127.0.0.1:{upstream_port};")
        .replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")
    )
    assert "${" not in site
    (tmp_path / "site.conf").write_text(site)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir(exist_ok=True)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"""
user root;
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
"""
    )
    return main


@pytest.fixture
def proxied(transactional_db: None, tmp_path: Path, subprocess_env: dict[str, str]) -> Iterator[tuple[int, Any]]:
    nginx_missing()
    tenant = TenantFactory(slug="acme")
    env = {**subprocess_env, "TRUSTED_PROXIES": "127.0.0.1", "RATELIMIT_AUTH_PER_MINUTE": "3"}
    with running_server(tmp_path, env) as server:
        port = free_port()
        config = render_proxy_config(tmp_path, upstream_port=server.port, listen_port=port)
        process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:
                assert process.poll() is None, (tmp_path / "error.log").read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            yield port, tenant
        finally:
            stop_process_group(process, grace=5)


def request(port: int, head: str, body: bytes = b"", *, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One request to the proxy from ``source`` (any 127.0.0.0/8 address is this machine's loopback)."""
    with socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        return read_response(sock)


@pytest.mark.slow
def test_the_compose_proxy_refuses_big_bodies_and_overwrites_the_client_address(proxied: tuple[int, Any]) -> None:
    port, _ = proxied
    status, headers, body = request(port, "POST /healthz HTTP/1.1\nHost: localhost\nContent-Length: 1073741824\n")
    assert status == 413 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["type"] == "payload_too_large"

    payload = json.dumps({"email": "nobody@acme.test", "password": "guess"}).encode()

    def sign_in(forwarded_for: str, source: str = "127.0.0.1") -> int:
        return request(
            port,
            f"POST {LOGIN} HTTP/1.1\nHost: localhost\nX-Tenant-ID: acme\nContent-Type: application/json\n"
            f"X-Forwarded-For: {forwarded_for}\nContent-Length: {len(payload)}\nConnection: close\n",
            payload,
            source=source,
        )[0]

    statuses = [sign_in(f"198.51.100.{i}") for i in range(5)]
    assert statuses == [401, 401, 401, 429, 429], statuses
    # The app trusts the proxy (TRUSTED_PROXIES=127.0.0.1, from its environment) and takes the address
    # nginx wrote: another client (another loopback address) has a limit of its own.
    assert sign_in("198.51.100.9", source="127.0.0.2") == 401


@pytest.mark.slow
def test_uploads_pass_the_proxy_up_to_their_own_limit(proxied: tuple[int, Any]) -> None:
    port, _ = proxied
    size = 8 * MIB
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            (
                "POST /api/v1/documents/ HTTP/1.1\r\nHost: localhost\r\nX-Tenant-ID: acme\r\n"
                f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {size}\r\n\r\n"
            ).encode()
        )
        for _ in range(size // MIB):
            sock.sendall(b"z" * MIB)
        status, _, body = read_response(sock, timeout=30)
    assert status == 401, body  # through to the app, which wants a bearer
    status, _, body = request(
        port, f"POST /api/v1/documents/ HTTP/1.1\nHost: localhost\nX-Tenant-ID: acme\nContent-Length: {30 * MIB}\n"
    )
    assert status == 413 and json.loads(body)["error"]["type"] == "payload_too_large"
