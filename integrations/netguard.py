"""Outbound HTTP to tenant-supplied URLs without server-side request forgery.

A webhook URL is checked, resolved once, and the connection goes to the address that was checked:

1. Only ``http``/``https``, a host name, no user info.
2. The host is resolved once (:data:`resolver`, ``socket.getaddrinfo`` by default; tests swap it).
   Every address must be globally routable: loopback, private, link-local (169.254/16, the cloud
   metadata service), carrier-grade NAT, multicast, reserved and unspecified ones are refused, also
   as IPv4-mapped IPv6. An operator allow-list (``WEBHOOK_ALLOWED_HOSTS``, exact host names or
   literal addresses) lifts the check for the hosts it names.
3. The request is made to ``scheme://<checked ip>:<port>/path`` with ``Host: <original host>``, and
   for HTTPS with SNI and certificate verification against the original host name (httpcore's
   ``sni_hostname`` extension sets the TLS ``server_hostname``, which both SNI and Python's
   hostname check use). A DNS answer that changes between the check and the connection (DNS
   rebinding) cannot redirect it.
4. Short timeouts, no redirects (a 3xx is a failed delivery), no proxies from the environment, and
   at most ``RESPONSE_EXCERPT_BYTES`` of the answer are read.

Refusals raise :class:`UnsafeURL` before any connection is attempted.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

RESPONSE_EXCERPT_BYTES = 1024
METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}

Resolver = Callable[[str, int], list[str]]


class UnsafeURL(Exception):
    """The URL may not be called (bad scheme, credentials, a forbidden address); ``code`` says why."""

    def __init__(self, message: str, code: str = "url_refused") -> None:
        super().__init__(message)
        self.code = code


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the order the system gives them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


resolver: Resolver = system_resolver  # tests replace it (never send traffic to the addresses refused)


def address_allowed(address: str) -> bool:
    """Whether ``address`` is globally routable (and not a metadata service)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        ip = ip.sixtofour
    return bool(ip.is_global) and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``addresses``, all checked) and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    def url_for(self, address: str) -> str:
        netloc = f"[{address}]" if ":" in address else address
        return urlunsplit((self.scheme, f"{netloc}:{self.port}", self.path, "", ""))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path?query)`` of an acceptable URL, or :class:`UnsafeURL`."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL("The URL is not valid.", "url_invalid") from exc
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("Only http and https URLs are allowed.", "url_scheme")
    if parts.username or parts.password:
        raise UnsafeURL("URLs with credentials are not allowed.", "url_credentials")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURL("The URL has no host.", "url_invalid")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


def check_url(url: str) -> Target:
    """Validate and resolve ``url`` once; :class:`UnsafeURL` unless every address may be called."""
    scheme, host, port, path = parse_url(url)
    allowed_hosts = {h.strip().lower().rstrip(".") for h in settings.WEBHOOK_ALLOWED_HOSTS if h.strip()}
    on_allow_list = host in allowed_hosts
    if host in METADATA_HOSTS and not on_allow_list:
        raise UnsafeURL("Metadata service addresses are not allowed.", "url_forbidden_address")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeURL(f"The host {host!r} does not resolve.", "url_unresolvable") from exc
    if not addresses:
        raise UnsafeURL(f"The host {host!r} does not resolve.", "url_unresolvable")
    if not on_allow_list:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise UnsafeURL(
                f"The URL resolves to a private, loopback, link-local or reserved address ({refused[0]}).",
                "url_forbidden_address",
            )
    # IPv4 first: hosts often publish AAAA records they do not listen on.
    ordered = sorted(addresses, key=lambda a: ":" in a)
    return Target(url=url, scheme=scheme, host=host, port=port, path=path, addresses=tuple(ordered))


@dataclass(frozen=True)
class Response:
    status_code: int
    excerpt: str
    latency_ms: int


def _ssl_context() -> ssl.SSLContext:
    bundle = settings.WEBHOOK_CA_BUNDLE or None
    context = ssl.create_default_context(cafile=bundle)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def post(target: Target, *, body: bytes, headers: dict[str, str]) -> Response:
    """POST ``body`` to a checked target, connecting only to its checked addresses.

    Raises ``httpx.HTTPError`` (connection, TLS, timeout) when no address answered.
    """
    timeout = httpx.Timeout(
        settings.WEBHOOK_TIMEOUT_SECONDS, connect=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, pool=1.0
    )
    last_error: Exception | None = None
    with httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=_ssl_context(), http2=False
    ) as client:
        for address in target.addresses:
            request = client.build_request(
                "POST",
                target.url_for(address),
                content=body,
                headers={**headers, "Host": target.host_header},
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            started = time.monotonic()
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as exc:  # try the next checked address
                last_error = exc
                continue
            try:
                excerpt = b""
                for chunk in response.iter_raw():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                        break
            finally:
                response.close()
            latency_ms = int((time.monotonic() - started) * 1000)
            return Response(
                response.status_code, excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace"), latency_ms
            )
    assert last_error is not None
    raise last_error
