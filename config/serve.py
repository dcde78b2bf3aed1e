"""Our ASGI server entry point: daphne, with request bodies bounded where the bytes arrive and a
redacting access log.

``python -m config.serve [daphne's options] config.asgi:application`` (``make run``, the Dockerfile,
compose and the tests' servers use it); the same command line as ``daphne``.

The access log (verbosity 1 and up, or ``--access-log``) writes request lines through
:func:`config.logging.redact_url`, so the chat socket's ``?token=`` (or any credential in a query
string) is written as ``token=[redacted]``.

Body limits: why not a middleware? daphne hands a request to the application only after
Twisted has received the whole body, so a 1 GiB ``POST`` is read in full (and the process keeps
hundreds of MB) before any Django code runs. Twisted's ``HTTPChannel`` tells the request the
declared length once the headers are in (``gotLength``) and then feeds it the body piece by piece
(``handleContentChunk``). :class:`BoundedRequest` hooks both:

* a ``Content-Length`` above the route's limit is refused at once with 413 ``payload_too_large``
  in the error envelope, before one byte of the body is accepted;
* a chunked (or otherwise unannounced) body is counted as it streams and refused the moment it
  passes the limit; what was buffered is dropped.

After refusing, the response is written, our side of the connection is shut for writing (the client
sees the answer and the end of it), and whatever the client still sends is read and discarded for
up to :data:`LINGER_SECONDS` (closing at once with unread data would make the kernel send a reset,
which can destroy the answer before the client reads it). Nothing of it is kept.

Twisted's own parsing of form bodies into ``request.args`` (a second in-memory copy of every
upload, which daphne never reads) is switched off.

The limits (:func:`config.bodylimits.body_limit`): uploads ``MAX_UPLOAD_MB`` plus the form's
overhead, everything else ``DATA_UPLOAD_MAX_MEMORY_SIZE``; ``REQUEST_BODY_LIMITS`` adds routes.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import daphne.cli
import daphne.server  # before anything imports twisted.internet.reactor: it installs the asyncio reactor
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import reactor
from twisted.web import http

from config.logging import redact_url

logger = logging.getLogger("config.serve")

LINGER_SECONDS = 5.0


def _refusal(limit: int, request_id: str) -> bytes:
    from config.request_id import clean_request_id

    request_id = clean_request_id(request_id)
    body = json.dumps(
        {
            "error": {
                "type": "payload_too_large",
                "message": f"The request body is larger than this endpoint accepts ({limit} bytes).",
                "details": {"limit_bytes": limit},
                "request_id": request_id,
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 413 Payload Too Large\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + body


class BoundedRequest(WebRequest):
    """daphne's request, refusing bodies over the route's limit as they arrive (see the module docstring)."""

    body_limit: int = 0
    body_received: int = 0
    body_refused: bool = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted would read a whole form body into memory again to fill ``request.args`` (and answer
        # a bare 400 to a multipart body it cannot parse) before daphne runs; daphne never reads it.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        from config.bodylimits import body_limit

        path = getattr(self.channel, "_path", b"") or b""
        method = getattr(self.channel, "_command", b"") or b""
        self.body_limit = body_limit(method.decode("latin-1"), path.split(b"?", 1)[0].decode("latin-1"))
        self.body_received = 0
        if length is not None and length > self.body_limit:
            self.refuse_body()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_refused:
            return
        self.body_received += len(data)
        if self.body_received > self.body_limit:
            self.refuse_body()
            return
        super().handleContentChunk(data)

    def refuse_body(self) -> None:
        """Answer 413 now, drop what was buffered, and discard the rest of what the client sends."""
        self.body_refused = True
        content = getattr(self, "content", None)
        if content is not None:
            content.close()
        channel = self.channel
        transport = channel.transport
        request_id = (self.requestHeaders.getRawHeaders(b"X-Request-ID") or [b""])[0].decode("latin-1", "replace")
        logger.warning(
            "request_body_refused",
            extra={"limit": self.body_limit, "received": self.body_received, "client": str(transport.getPeer())},
        )
        # From here on the channel parses nothing: bytes still arriving are read and thrown away.
        channel.dataReceived = _discard
        channel.setTimeout(None)
        transport.write(_refusal(self.body_limit, request_id))
        try:
            transport.loseWriteConnection()
        except (AttributeError, NotImplementedError):  # transports without half-close (TLS)
            transport.loseConnection()
            return
        reactor.callLater(LINGER_SECONDS, _abort, transport)


def _discard(data: bytes) -> None:
    return None


def _abort(transport: Any) -> None:
    if transport.connected:
        transport.abortConnection()


class BoundedHTTPFactory(HTTPFactory):
    """daphne's factory, making :class:`BoundedRequest` s."""

    def buildProtocol(self, addr: Any) -> http.HTTPChannel:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        return protocol


class Server(daphne.server.Server):
    """daphne's server with :class:`BoundedHTTPFactory` (``run()`` builds its factory inline, so the
    assignment is intercepted rather than copying ``run()``)."""

    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        self._http_factory = factory if isinstance(factory, BoundedHTTPFactory) else BoundedHTTPFactory(self)


class RedactingAccessLog(AccessLogGenerator):
    """daphne's NCSA-style access log with credentials taken out of the request line."""

    def write_entry(self, host: Any, date: Any, request: str, *args: Any, **kwargs: Any) -> None:
        super().write_entry(host, date, redact_url(request), *args, **kwargs)


class CommandLine(CommandLineInterface):
    """daphne's command line, serving with :class:`Server`; refuses the image build's settings switch."""

    description = "DocuMind's HTTP/WebSocket server (daphne with request body limits)"
    server_class = Server

    def load_asgi_app(self, asgi_app_path: str) -> Any:
        application = super().load_asgi_app(asgi_app_path)
        from django.conf import settings

        if getattr(settings, "BUILD_STEP", ""):
            raise SystemExit("DJANGO_BUILD_STEP is set: it is for building the image only, not for serving.")
        return application


def main(argv: list[str] | None = None) -> None:
    # daphne's CLI builds its access log from the module-level name: swap in ours.
    daphne.cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[misc]
    CommandLine().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
