"""A small client of the running product, over real HTTP (httpx) and a real WebSocket (websockets).

Used by the end-to-end tests against processes started by :mod:`tests.stack`: nothing here touches
the product's code or database; it speaks the public API as any client would.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

Event = dict[str, Any]


def read_code(mail_dir: Path, email: str, *, after: set[Path], timeout: float = 20.0) -> str:
    """The six-digit code of the first new e-mail to ``email`` in the filebased backend's folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.log"), key=lambda p: p.stat().st_mtime):
            if path in after:
                continue
            text = path.read_text(errors="replace")
            if f"To: {email}" in text:
                match = re.search(r"^\s+(\d{6})\s*$", text, re.MULTILINE)
                if match:
                    return match.group(1)
        time.sleep(0.1)
    raise TimeoutError(f"no sign-in code for {email} in {mail_dir} within {timeout:.0f}s")


class Api:
    """REST calls to one web process, as one tenant (and, once signed in, one user)."""

    def __init__(self, base: str, tenant: str, *, token: str | None = None) -> None:
        self.base = base
        self.tenant = tenant
        self.token = token
        self.http = httpx.Client(base_url=base, timeout=30)

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"X-Tenant-ID": self.tenant, **extra}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers(), **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers=self.headers(), json=json_body, **kwargs)

    def sign_in_with_code(self, email: str, mail_dir: Path) -> dict[str, Any]:
        """``request-code`` → read the e-mailed code → ``verify-code``; keeps the access token."""
        seen = set(mail_dir.glob("*.log"))
        response = self.http.post(
            "/api/v1/auth/request-code", headers={"X-Tenant-ID": self.tenant}, json={"email": email}
        )
        assert response.status_code == 202, response.text
        code = read_code(mail_dir, email, after=seen)
        response = self.http.post(
            "/api/v1/auth/verify-code", headers={"X-Tenant-ID": self.tenant}, json={"email": email, "code": code}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        self.token = body["access"]
        return body

    def upload(self, name: str, pdf: bytes, *, title: str) -> dict[str, Any]:
        response = self.http.post(
            "/api/v1/documents/",
            headers=self.headers(),
            files={"file": (name, pdf, "application/pdf")},
            data={"title": title},
        )
        assert response.status_code == 202, response.text
        return response.json()

    def close(self) -> None:
        self.http.close()


class Socket:
    """The chat socket: send frames, wait for events matching a predicate (others are kept, in order)."""

    def __init__(self, ws_base: str, token: str, *, origin: str | None = "same") -> None:
        """``origin="same"``: send the server's own origin, as a page it served would; None: no Origin."""
        if origin == "same":
            origin = ws_base.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        self._connecting = connect(f"{ws_base}/ws/chat/?token={token}", origin=origin, open_timeout=15)
        self.ws: ClientConnection = self._connecting.__enter__()
        self.backlog: list[Event] = []
        self.seen: list[Event] = []

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def _next(self, timeout: float) -> Event:
        event = json.loads(self.ws.recv(timeout=timeout))
        self.seen.append(event)
        return event

    def wait_for(self, predicate: Callable[[Event], bool], *, timeout: float, what: str = "event") -> Event:
        """The first event (kept back or new) matching ``predicate``; TimeoutError names what was seen."""
        for index, event in enumerate(self.backlog):
            if predicate(event):
                return self.backlog.pop(index)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} within {timeout:.0f}s; last events: {self.seen[-8:]}")
            try:
                event = self._next(left)
            except TimeoutError:
                raise TimeoutError(f"no {what} within {timeout:.0f}s; last events: {self.seen[-8:]}") from None
            if predicate(event):
                return event
            self.backlog.append(event)

    def answer(self, message_id: str | None = None, *, timeout: float = 60.0) -> list[Event]:
        """The chat events of one answer up to its ``chat.end`` (``message_id``: of that answer only)."""

        def mine(event: Event) -> bool:
            return (event["type"].startswith("chat.") or event["type"] == "error") and (
                message_id is None or event.get("message_id") in (None, message_id)
            )

        events = []
        deadline = time.monotonic() + timeout
        while not events or events[-1]["type"] != "chat.end":
            events.append(self.wait_for(mine, timeout=max(0.1, deadline - time.monotonic()), what="chat.end"))
        return events

    def document_statuses(self, document_id: str, *, timeout: float = 90.0) -> list[Event]:
        """``document.status`` events of one document until it is ``ready`` or ``failed``."""
        events = []
        while not events or events[-1]["status"] not in ("ready", "failed"):
            events.append(
                self.wait_for(
                    lambda e: e["type"] == "document.status" and e["document_id"] == document_id,
                    timeout=timeout,
                    what=f"document.status of {document_id}",
                )
            )
        return events

    def close(self) -> None:
        self._connecting.__exit__(None, None, None)

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def streamed_text(events: list[Event]) -> str:
    """The answer as the client assembles it: each ``chat.token`` delta written at its offset."""
    text = ""
    for event in events:
        if event["type"] == "chat.token":
            offset = event.get("offset", len(text))
            text = text[:offset] + event["delta"]
    return text
