"""Plain WebSocket clients against a real daphne: scripts send no ``Origin`` and are let in; browsers'
``Origin`` is checked; refused handshakes are logged with their reason; tokens stay out of the logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from accounts.authentication import tokens_for_user
from tests.subprocesses import build_subprocess_env, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _log_events(log: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            found.append(json.loads(line))
    return found


def test_scripts_chat_without_origin_browsers_are_checked_and_refusals_are_logged(
    user: Any, handbook: Any, tmp_path: Path
) -> None:
    env = build_subprocess_env(
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        CHAT_PROVIDER="extractive",
        EMBEDDING_PROVIDER="hashing",
        WEBSOCKET_ALLOWED_ORIGINS="https://app.example.com",
        RATELIMIT_ENABLED="false",
    )
    token = tokens_for_user(user)["access"]
    log = tmp_path / "daphne.log"
    with daphne_server(env, log, args=["-v", "1"]) as base:
        ws_base = base.replace("http://", "ws://") + "/ws/chat/"

        # A plain client (no Origin header at all) asks a question and gets the streamed answer.
        with connect(f"{ws_base}?token={token}", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "chat.message", "content": "How many vacation days do employees get?"}))
            events = []
            while not events or events[-1]["type"] not in ("chat.end", "error"):
                events.append(json.loads(ws.recv(timeout=30)))
        assert events[0]["type"] == "chat.start" and events[-1]["type"] == "chat.end", events
        assert events[-1]["status"] == "completed" and events[-1]["citations"], events[-1]

        # Browsers: the page's own server, and the configured origins, are let in ...
        for origin in (base, "https://app.example.com", "HTTPS://APP.EXAMPLE.COM:443"):
            with connect(f"{ws_base}?token={token}", origin=origin, open_timeout=10) as ws:
                ws.send(json.dumps({"type": "ping"}))
                assert json.loads(ws.recv(timeout=10))["type"] == "pong"
        # ... any other origin is refused before the handshake completes.
        for origin in ("https://evil.example", "null", "http://127.0.0.1:1"):
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{ws_base}?token={token}", origin=origin, open_timeout=10)
            assert refused.value.response.status_code == 403, origin

        # A bad token: accepted only to be closed with 4401 (browsers cannot read a 403's reason).
        with connect(f"{ws_base}?token=not-a-jwt", open_timeout=10) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

        # Credentials in a query string never reach the access log or the request log lines.
        assert httpx.get(f"{base}/api/v1/health?token={token}", timeout=10).status_code == 200

    refused_events = _log_events(log, "websocket_refused")
    by_reason = [(e["reason"], e.get("origin")) for e in refused_events]
    assert ("origin_not_allowed", "https://evil.example") in by_reason, refused_events
    assert ("origin_null", "null") in by_reason, refused_events
    assert ("origin_not_allowed", "http://127.0.0.1:1") in by_reason, refused_events
    assert any(e["reason"] == "token_not_valid" and e["close_code"] == 4401 for e in refused_events), refused_events
    output = log.read_text(errors="replace")
    assert "WSCONNECT" in output and "GET /api/v1/health?token=[redacted]" in output, output[-3000:]
    assert token not in output
