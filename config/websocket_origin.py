"""Which WebSocket handshakes are refused for their ``Origin`` header, and the log line that says why.

Sockets authenticate with a bearer token in the URL (``?token=``), not with cookies, so cross-site
WebSocket hijacking, which rides on a browser's ambient cookies, does not apply; the ``Origin``
check is defence in depth for browsers. Hence:

* no ``Origin`` header (a script, a CLI, a server; browsers always send one): accepted;
* an ``Origin`` in ``WEBSOCKET_ALLOWED_ORIGINS`` (default: ``CORS_ALLOWED_ORIGINS``; ``*`` allows any),
  or naming the host the request was sent to (the page was served by this server): accepted;
* anything else, ``null`` included (sandboxed frames, ``file:`` pages): refused before the handshake
  completes (the client sees HTTP 403) and logged as ``websocket_refused`` with the reason.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

logger = logging.getLogger(__name__)

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _normalise(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case with the default port left out; None when unparseable."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return f"{parts.scheme.lower()}://{host.lower()}"


def _netloc(origin: str) -> str:
    return origin.split("://", 1)[1]


def refusal_reason(scope: dict[str, Any]) -> str | None:
    """Why this handshake is refused for its ``Origin``, or None when it may go on."""
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    allowed = list(settings.WEBSOCKET_ALLOWED_ORIGINS)
    if "*" in allowed:
        return None
    if origin.strip().lower() == "null":
        return "origin_null"  # an opaque origin: a sandboxed frame or a file: page
    normalised = _normalise(origin)
    if normalised is None:
        return "origin_malformed"
    if normalised in {_normalise(item) for item in allowed}:
        return None
    host = (_header(scope, b"host") or "").strip().lower()
    if host:
        # The Host header holds the default port only when the client wrote it: compare both forms.
        scheme = normalised.split("://", 1)[0]
        same = {_netloc(normalised)}
        default = _DEFAULT_PORTS.get(scheme)
        if default is not None and ":" not in _netloc(normalised).rsplit("]", 1)[-1]:
            same.add(f"{_netloc(normalised)}:{default}")
        if host in same:
            return None
    return "origin_not_allowed"


class OriginValidator:
    """ASGI middleware in front of the WebSocket router: refuse handshakes by :func:`refusal_reason`."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            reason = refusal_reason(scope)
            if reason is not None:
                client = scope.get("client") or ("", 0)
                logger.warning(
                    "websocket_refused",
                    extra={
                        "reason": reason,
                        "origin": (_header(scope, b"origin") or "")[:200],
                        "host": (_header(scope, b"host") or "")[:200],
                        "path": scope.get("path"),
                        "client_ip": client[0],
                    },
                )
                return await WebsocketDenier.as_asgi()(scope, receive, send)
        return await self.application(scope, receive, send)
