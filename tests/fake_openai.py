"""A fake OpenAI-compatible HTTP server for the test suite (and the chat benchmark).

It serves real HTTP on ``127.0.0.1:<free port>`` from a thread (stdlib ``ThreadingHTTPServer``,
HTTP/1.1, chunked Server-Sent Events), so the official ``openai`` client is exercised end to end:
connection handling, SSE decoding, retries with ``Retry-After``, error mapping. Nothing of ours is
mocked; point ``OPENAI_BASE_URL`` at :attr:`FakeOpenAI.base_url` and set any ``OPENAI_API_KEY``.

Endpoints
---------
``POST /v1/embeddings``
    ``input`` a string, a list of strings or of token arrays; ``dimensions`` honoured (default
    1536); ``encoding_format`` ``float`` (default) or ``base64`` (little-endian float32, as OpenAI
    does). Vectors are deterministic (seeded by the SHA-256 of the input) and L2-normalised, so the
    same text always gets the same vector. ``usage.prompt_tokens``/``total_tokens`` are reported
    with :func:`fake_token_count`.
``POST /v1/chat/completions``
    Without ``stream``: one ``chat.completion`` object with ``usage``. With ``stream: true``: SSE
    ``data:`` chunks (role chunk, one content chunk per word, a chunk with ``finish_reason``), then,
    when ``stream_options.include_usage`` is true, the final chunk with empty ``choices`` and
    ``usage``, then ``data: [DONE]``. The reply is :attr:`FakeOpenAI.reply` (a string, or a callable
    taking the request body and returning one); by default :func:`default_reply`, which cites
    ``[1]`` when the prompt holds numbered sources and echoes the last user message.
``GET /v1/models``
    A list with the chat and embedding models.

Fault modes (:meth:`FakeOpenAI.set_fault`)
-----------------------------------------
``rate_limit``     429 with ``Retry-After: <retry_after>`` (seconds, default ``"1"``) and an OpenAI error body.
``server_error``   500 with an OpenAI error body.
``stream_cut``     the stream stops after ``after`` content chunks: the connection is closed without
                   the terminating chunk, ``finish_reason`` or ``[DONE]`` (the client sees a broken
                   transfer).
``malformed_chunk`` after ``after`` content chunks a ``data:`` line that is not JSON, then the stream ends.
``slow_first_token`` waits ``delay`` seconds before the first chunk (streaming) or the response.
Each fault applies to ``endpoint`` (``"chat"``, ``"embeddings"`` or ``"any"``) for the next ``times``
requests (``None``: until :meth:`~FakeOpenAI.reset`). ``token_delay`` (seconds between content chunks)
makes streams slow enough to cancel or to interrupt.

Recording
---------
:attr:`FakeOpenAI.requests` lists every request received (:class:`RecordedRequest`: method, path,
headers with lower-case names, parsed JSON body, time). :attr:`FakeOpenAI.usage_sent` lists the ``usage`` objects reported.

Pytest
------
``fake_openai_server`` (session) starts one server; ``fake_openai`` (function) resets it and yields it::

    def test_embeds(fake_openai, settings):
        settings.OPENAI_BASE_URL = fake_openai.base_url      # ends in /v1
        settings.OPENAI_API_KEY = "sk-test"
        fake_openai.set_fault("rate_limit", endpoint="embeddings", times=1, retry_after="0.01")
        ...
        assert [r.path for r in fake_openai.requests] == ["/v1/embeddings", "/v1/embeddings"]

Outside pytest: ``with FakeOpenAI() as fake: ...`` or ``start()``/``stop()`` in-process; or in a process
of its own (so that its threads do not share a GIL with the client being measured)::

    python -m tests.fake_openai --port 0      # prints "base_url http://127.0.0.1:<port>/v1", serves until killed

controlled over HTTP: ``POST /_fake/config`` with any of ``reply``, ``token_delay``, ``words_per_chunk``,
``api_key`` and ``faults`` (a list of :meth:`~FakeOpenAI.set_fault` keyword dicts); ``POST /_fake/reset``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

FAULT_MODES = ("rate_limit", "server_error", "stream_cut", "malformed_chunk", "slow_first_token")
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings"}


def fake_token_count(text: str) -> int:
    """The fake's token count: words and punctuation marks (close to a BPE count for English)."""
    return len(re.findall(r"\w+|[^\w\s]", text or ""))


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic L2-normalised vector for ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def default_reply(body: dict[str, Any]) -> str:
    """Echo the question and cite ``[1]`` when the prompt carries numbered sources."""
    messages = body.get("messages") or []
    prompt = "\n".join(_message_text(m) for m in messages)
    question = next((_message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    question = question.strip().splitlines()[-1] if question.strip() else ""
    cite = " [1]" if re.search(r"^\[1\]", prompt, re.MULTILINE) else ""
    return f"Fake answer to: {question[:200]}{cite}."


@dataclass
class RecordedRequest:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    at: float = field(default_factory=time.monotonic)
    client_port: int | None = None  # the caller's TCP port: which process sent it (psutil)

    @property
    def endpoint(self) -> str:
        return ENDPOINTS.get(self.path, self.path)


@dataclass
class Fault:
    mode: str
    endpoint: str = "any"
    times: int | None = None
    retry_after: str = "1"
    after: int = 2
    delay: float = 1.0

    def matches(self, endpoint: str) -> bool:
        return self.endpoint in ("any", endpoint) and (self.times is None or self.times > 0)


class _StreamCut(Exception):
    """Raised inside the handler to drop the connection mid-stream."""


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: hundreds of streams opened at once (the chat
    # benchmark) would have their connections dropped and retried a second later.
    request_queue_size = 1024


class FakeOpenAI:
    """The fake server and its controls (see the module docstring)."""

    chat_model = "gpt-4o-mini"
    embedding_model = "text-embedding-3-small"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._server = _Server((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []
        self.usage_sent: list[dict[str, int]] = []
        self.faults: list[Fault] = []
        self.reply: str | Callable[[dict[str, Any]], str] = default_reply
        self.token_delay: float = 0.0
        self.words_per_chunk: int = 1
        self.api_key: str | None = None  # when set, other bearer tokens get 401

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def process_env(self) -> dict[str, str]:
        """The environment that points a server or worker process at this fake: its URL, a key, no client retries
        (a test that wants retries overrides ``OPENAI_MAX_RETRIES``)."""
        return {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": self.base_url, "OPENAI_MAX_RETRIES": "0"}

    def start(self) -> FakeOpenAI:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- controls ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget requests, faults, the custom reply, delays and the required key."""
        with self._lock:
            self.requests.clear()
            self.usage_sent.clear()
            self.faults.clear()
            self.reply = default_reply
            self.token_delay = 0.0
            self.words_per_chunk = 1
            self.api_key = None

    def set_fault(
        self,
        mode: str,
        *,
        endpoint: str = "any",
        times: int | None = None,
        retry_after: str | float = "1",
        after: int = 2,
        delay: float = 1.0,
    ) -> Fault:
        """Make the next ``times`` requests to ``endpoint`` fail in ``mode`` (see the module docstring)."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        if endpoint not in ("any", "chat", "embeddings"):
            raise ValueError("endpoint must be 'any', 'chat' or 'embeddings'")
        fault = Fault(mode=mode, endpoint=endpoint, times=times, retry_after=str(retry_after), after=after, delay=delay)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        """The recorded requests to ``"chat"`` or ``"embeddings"``."""
        return [r for r in list(self.requests) if r.endpoint == endpoint]

    # --- used by the handler -----------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_faults(self, endpoint: str) -> list[Fault]:
        """The faults that apply to this request, each consuming one of its ``times``."""
        taken = []
        with self._lock:
            for fault in self.faults:
                if fault.matches(endpoint):
                    if fault.times is not None:
                        fault.times -= 1
                    taken.append(fault)
        return taken

    def _reply_for(self, body: dict[str, Any]) -> str:
        reply = self.reply
        return reply(body) if callable(reply) else str(reply)


def _openai_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    return {key.lower(): value for key, value in handler.headers.items()}


def _make_handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeOpenAI/1.0"
        disable_nagle_algorithm = True  # small SSE writes go out at once (no 40 ms delayed-ACK stalls)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        # --- plumbing ------------------------------------------------------------------------
        def _read_json(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                return {"__invalid_json__": raw[:200].decode("utf-8", "replace")}

        def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _sse(self, payload: Any) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            self._chunk(f"data: {text}\n\n".encode())

        # --- routing -------------------------------------------------------------------------
        def do_GET(self) -> None:
            fake._record(RecordedRequest("GET", self.path, _headers(self), None, client_port=self.client_address[1]))
            if self.path.rstrip("/") == "/v1/models":
                models = [fake.chat_model, "gpt-4o", fake.embedding_model]
                self._send_json(
                    200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in models]}
                )
            else:
                self._send_json(404, _openai_error(f"Unknown path {self.path}", "invalid_request_error"))

        def do_POST(self) -> None:
            body = self._read_json()
            if self.path.startswith("/_fake/"):
                self._control(body if isinstance(body, dict) else {})
                return
            fake._record(RecordedRequest("POST", self.path, _headers(self), body, client_port=self.client_address[1]))
            endpoint = ENDPOINTS.get(self.path)
            if endpoint is None:
                self._send_json(404, _openai_error(f"Unknown path {self.path}", "invalid_request_error"))
                return
            if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                self._send_json(
                    401, _openai_error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
                )
                return
            if not isinstance(body, dict) or "__invalid_json__" in body:
                self._send_json(
                    400, _openai_error("We could not parse the JSON body of your request.", "invalid_request_error")
                )
                return
            faults = fake._take_faults(endpoint)
            modes = {f.mode: f for f in faults}
            if "rate_limit" in modes:
                self._send_json(
                    429,
                    _openai_error("Rate limit reached (fake).", "requests", "rate_limit_exceeded"),
                    {"Retry-After": modes["rate_limit"].retry_after},
                )
                return
            if "server_error" in modes:
                self._send_json(500, _openai_error("The server had an error (fake).", "server_error"))
                return
            delay = modes["slow_first_token"].delay if "slow_first_token" in modes else 0.0
            try:
                if endpoint == "embeddings":
                    time.sleep(delay)
                    self._embeddings(body)
                elif body.get("stream"):
                    self._chat_stream(body, modes, delay)
                else:
                    time.sleep(delay)
                    self._chat(body)
            except (_StreamCut, BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _control(self, body: dict[str, Any]) -> None:
            """``/_fake/config`` and ``/_fake/reset``: the controls, for a fake in another process."""
            try:
                if self.path == "/_fake/reset":
                    fake.reset()
                elif self.path == "/_fake/config":
                    for key in ("reply", "token_delay", "words_per_chunk", "api_key"):
                        if key in body:
                            setattr(fake, key, body[key])
                    for fault in body.get("faults") or []:
                        fake.set_fault(**fault)
                else:
                    self._send_json(404, _openai_error(f"Unknown control {self.path}", "invalid_request_error"))
                    return
            except (TypeError, ValueError) as exc:
                self._send_json(400, _openai_error(str(exc), "invalid_request_error"))
                return
            self._send_json(200, {"ok": True, "requests": len(fake.requests)})

        # --- endpoints -----------------------------------------------------------------------
        def _embeddings(self, body: dict[str, Any]) -> None:
            inputs = body.get("input")
            if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
                inputs = [inputs]
            if not isinstance(inputs, list) or not inputs:
                self._send_json(
                    400, _openai_error("'input' must be a non-empty string or array.", "invalid_request_error")
                )
                return
            dimensions = int(body.get("dimensions") or 1536)
            data, tokens = [], 0
            for index, item in enumerate(inputs):
                text = item if isinstance(item, str) else " ".join(str(t) for t in item)
                tokens += fake_token_count(text) if isinstance(item, str) else len(item)
                vector = fake_vector(text, dimensions)
                if body.get("encoding_format") == "base64":
                    embedding: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                else:
                    embedding = vector
                data.append({"object": "embedding", "index": index, "embedding": embedding})
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            with fake._lock:
                fake.usage_sent.append(usage)
            self._send_json(
                200,
                {"object": "list", "data": data, "model": body.get("model") or fake.embedding_model, "usage": usage},
            )

        def _usage(self, body: dict[str, Any], reply: str) -> dict[str, int]:
            prompt = sum(fake_token_count(_message_text(m)) for m in body.get("messages") or [])
            completion = fake_token_count(reply)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            with fake._lock:
                fake.usage_sent.append(usage)
            return usage

        def _chat(self, body: dict[str, Any]) -> None:
            reply = fake._reply_for(body)
            self._send_json(
                200,
                {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model") or fake.chat_model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": self._usage(body, reply),
                },
            )

        def _pieces(self, reply: str) -> Iterator[str]:
            words = re.findall(r"\S+\s*|\s+", reply)
            step = max(1, fake.words_per_chunk)
            for i in range(0, len(words), step):
                yield "".join(words[i : i + step])

        def _chat_stream(self, body: dict[str, Any], modes: dict[str, Fault], delay: float) -> None:
            reply = fake._reply_for(body)
            ident, created, model = (
                f"chatcmpl-{uuid.uuid4().hex[:12]}",
                int(time.time()),
                body.get("model") or fake.chat_model,
            )

            def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                }

            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if delay:
                time.sleep(delay)
            self._sse(chunk({"role": "assistant", "content": ""}))
            cut, malformed = modes.get("stream_cut"), modes.get("malformed_chunk")
            for index, piece in enumerate(self._pieces(reply)):
                if cut is not None and index >= cut.after:
                    raise _StreamCut()  # no terminating chunk: the transfer is broken
                if malformed is not None and index >= malformed.after:
                    self._sse('{"id": "broken", "choices": [{"delta": {"content": ')
                    self._chunk(b"")
                    return
                if index and fake.token_delay:
                    time.sleep(fake.token_delay)
                self._sse(chunk({"content": piece}))
            self._sse(chunk({}, "stop"))
            if (body.get("stream_options") or {}).get("include_usage"):
                self._sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": self._usage(body, reply),
                    }
                )
            self._sse("[DONE]")
            self._chunk(b"")

    return Handler


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One fake server for the whole test session."""
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's fake server, reset before and after the test (requests, faults, reply)."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


def main(argv: list[str] | None = None) -> int:
    """Serve a fake until SIGTERM/SIGINT (see the module docstring)."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeOpenAI(args.host, args.port)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    sys.stdout.write(f"base_url {fake.base_url}\n")
    sys.stdout.flush()
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
