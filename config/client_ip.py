"""The client's address: the peer's, or the proxy's ``X-Forwarded-For`` only when the peer is trusted.

``TRUSTED_PROXIES`` lists addresses or networks (``10.0.0.5``, ``172.31.240.0/24``). A request from
one of them gets ``REMOTE_ADDR`` set to the rightmost ``X-Forwarded-For`` entry that is not itself a
trusted proxy (the proxy appends or overwrites; anything to the left was written by the client). A
request from anyone else has every forwarding header removed, so nothing downstream (rate limits,
django-axes, logs, ``SECURE_PROXY_SSL_HEADER``) can be fooled by a client that sends them itself.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings

FORWARDING_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=4)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def is_trusted_proxy(address: str) -> bool:
    """Whether ``address`` is in ``TRUSTED_PROXIES``."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def forwarded_client(header: str) -> str | None:
    """The rightmost valid address of an ``X-Forwarded-For`` value that is not a trusted proxy."""
    for part in reversed([p.strip() for p in header.split(",")]):
        try:
            address = str(ipaddress.ip_address(part.strip("[]")))
        except ValueError:
            return None  # garbage where the proxy writes: do not guess
        if not is_trusted_proxy(address):
            return address
    return None


def resolve_client_ip(meta: dict[str, object]) -> None:
    """Rewrite ``meta`` (a request's META or a WSGI environ) as described in the module docstring."""
    peer = str(meta.get("REMOTE_ADDR") or "")
    if peer and is_trusted_proxy(peer):
        client = forwarded_client(str(meta.get("HTTP_X_FORWARDED_FOR") or ""))
        if client:
            meta["REMOTE_ADDR"] = client
        return
    for key in FORWARDING_HEADERS:
        meta.pop(key, None)
