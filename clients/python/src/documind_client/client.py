"""``DocuMind``: a thin, typed client over httpx (REST, Server-Sent Events) and websockets (chat).

Authenticate with an API key (``api_key=``: the tenant is implied) or sign in as a person
(``tenant=`` then :meth:`DocuMind.login` or :meth:`DocuMind.verify_code`). Every error answer raises
:class:`~documind_client.errors.DocuMindError` with the envelope's ``type``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

import httpx

from documind_client.errors import DocuMindError, TimeoutWaiting
from documind_client.sse import ServerEvent, iter_events
from documind_client.types import (
    Answer,
    APIKey,
    ChatSession,
    Document,
    Page,
    Project,
    SearchHit,
    Task,
    Tokens,
)

API = "/api/v1"


class DocuMind:
    """One connection to a DocuMind server; use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        tenant: str | None = None,
        access_token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.tenant = tenant
        self.tokens: Tokens | None = {"access": access_token, "refresh": ""} if access_token else None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    # --- plumbing --------------------------------------------------------------------------------
    def __enter__(self) -> DocuMind:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.tenant:
            headers["X-Tenant-ID"] = self.tenant
        if self.api_key:
            headers["Authorization"] = f"Api-Key {self.api_key}"
        elif self.tokens and self.tokens.get("access"):
            headers["Authorization"] = f"Bearer {self.tokens['access']}"
        headers.update(extra or {})
        return headers

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise DocuMindError.from_envelope(response.status_code, body)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any API call (``path`` below ``/api/v1``); the decoded JSON, or None for 204."""
        response = self._http.request(method, API + path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)
        self._raise_for(response)
        return None if response.status_code == 204 or not response.content else response.json()

    # --- signing in --------------------------------------------------------------------------
    def login(self, email: str, password: str) -> Tokens:
        """Sign in with a password (needs ``tenant``); later calls use the access token."""
        body = self.request("POST", "/auth/login", json={"email": email, "password": password})
        self.tokens = {"access": body["access"], "refresh": body["refresh"]}
        return self.tokens

    def request_code(self, email: str) -> None:
        self.request("POST", "/auth/request-code", json={"email": email})

    def verify_code(self, email: str, code: str) -> Tokens:
        body = self.request("POST", "/auth/verify-code", json={"email": email, "code": code})
        self.tokens = {"access": body["access"], "refresh": body["refresh"]}
        return self.tokens

    def refresh(self) -> Tokens:
        if not self.tokens or not self.tokens.get("refresh"):
            raise DocuMindError(0, "not_authenticated", "No refresh token: sign in first.")
        body = self.request("POST", "/auth/refresh", json={"refresh": self.tokens["refresh"]})
        self.tokens = {"access": body["access"], "refresh": body["refresh"]}
        return self.tokens

    def me(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "/auth/me"))

    # --- API keys (tenant admins) --------------------------------------------------------------
    def create_api_key(
        self,
        name: str,
        scopes: list[str],
        *,
        expires_at: str | None = None,
        rate_limit_per_minute: int | None = None,
        daily_token_quota: int | None = None,
    ) -> APIKey:
        """A new key; its secret (``["key"]``) is in this answer only."""
        body: dict[str, Any] = {"name": name, "scopes": scopes}
        for field, value in (
            ("expires_at", expires_at),
            ("rate_limit_per_minute", rate_limit_per_minute),
            ("daily_token_quota", daily_token_quota),
        ):
            if value is not None:
                body[field] = value
        return cast(APIKey, self.request("POST", "/api-keys/", json=body))

    def list_api_keys(self) -> list[APIKey]:
        return cast(list[APIKey], self._all("/api-keys/"))

    def revoke_api_key(self, key_id: str) -> None:
        self.request("DELETE", f"/api-keys/{key_id}/")

    # --- projects and documents --------------------------------------------------------------
    def create_project(self, name: str, description: str = "") -> Project:
        return cast(Project, self.request("POST", "/projects/", json={"name": name, "description": description}))

    def list_projects(self) -> list[Project]:
        return cast(list[Project], self._all("/projects/"))

    def delete_project(self, project_id: str) -> None:
        self.request("DELETE", f"/projects/{project_id}/")

    def upload(
        self,
        file: str | Path | bytes | BinaryIO,
        *,
        filename: str | None = None,
        title: str | None = None,
        project: str | None = None,
    ) -> Document:
        """Upload a PDF (a path, bytes or a binary file); 202: the document is queued for ingestion."""
        if isinstance(file, (str, Path)):
            path = Path(file)
            content: bytes | BinaryIO = path.read_bytes()
            filename = filename or path.name
        else:
            content = file
        data = {k: v for k, v in (("title", title), ("project", project)) if v}
        files = {"file": (filename or "document.pdf", content, "application/pdf")}
        return cast(Document, self.request("POST", "/documents/", files=files, data=data))

    def document(self, document_id: str) -> Document:
        return cast(Document, self.request("GET", f"/documents/{document_id}/"))

    def list_documents(self, **filters: str) -> list[Document]:
        return cast(list[Document], self._all("/documents/", params=filters))

    def wait_for_document(self, document_id: str, *, timeout: float = 120.0, interval: float = 0.5) -> Document:
        """Poll until the document is ``ready`` (returned) or ``failed`` (raises ``DocuMindError``)."""
        deadline = time.monotonic() + timeout
        while True:
            document = self.document(document_id)
            if document.get("status") == "ready":
                return document
            if document.get("status") == "failed":
                error = document.get("error") or {}
                raise DocuMindError(422, str(error.get("type", "ingestion_failed")), str(error.get("message", "")))
            if time.monotonic() > deadline:
                raise TimeoutWaiting(0, "timeout", f"Document {document_id} is still {document.get('status')}.")
            time.sleep(interval)

    def upload_and_wait(
        self, file: str | Path | bytes | BinaryIO, *, timeout: float = 120.0, **kwargs: Any
    ) -> Document:
        document = self.upload(file, **kwargs)
        return self.wait_for_document(document["id"], timeout=timeout)

    def delete_document(self, document_id: str) -> None:
        self.request("DELETE", f"/documents/{document_id}/")

    # --- search ------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        top_k: int = 5,
        mode: str = "hybrid",
        project: str | None = None,
        document_ids: list[str] | None = None,
    ) -> list[SearchHit]:
        body: dict[str, Any] = {"query": query, "top_k": top_k, "mode": mode}
        if project:
            body["project"] = project
        if document_ids:
            body["document_ids"] = document_ids
        answer = self.request("POST", "/search/", json=body)
        return cast(list[SearchHit], answer["results"] if isinstance(answer, dict) else answer)

    # --- chat over REST and Server-Sent Events -----------------------------------------------
    def create_session(self, title: str = "", *, project: str | None = None) -> ChatSession:
        body: dict[str, Any] = {"title": title}
        if project:
            body["project"] = project
        return cast(ChatSession, self.request("POST", "/chat/sessions/", json=body))

    def ask(self, session_id: str, content: str, **options: Any) -> Answer:
        """The whole answer as JSON (waits until it is complete)."""
        return cast(
            Answer, self.request("POST", f"/chat/sessions/{session_id}/messages/", json={"content": content, **options})
        )

    def ask_stream(self, session_id: str, content: str, **options: Any) -> Iterator[ServerEvent]:
        """Stream an answer as Server-Sent Events: ``chat.start``, ``chat.token``..., ``chat.end``
        (or ``error``). Each event has an ``id``: pass the last one to :meth:`resume_stream` after
        a dropped connection (the answer keeps generating on the server meanwhile)."""
        yield from self._sse("POST", f"/chat/sessions/{session_id}/messages/", json={"content": content, **options})

    def resume_stream(
        self, session_id: str, message_id: str, last_event_id: str | None = None
    ) -> Iterator[ServerEvent]:
        """The rest of an answer after ``last_event_id`` (all of it when None), live until ``chat.end``."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        yield from self._sse("GET", f"/chat/sessions/{session_id}/messages/{message_id}/stream", headers=headers)

    def cancel(self, session_id: str, message_id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("POST", f"/chat/sessions/{session_id}/messages/{message_id}/cancel"))

    def _sse(self, method: str, path: str, **kwargs: Any) -> Iterator[ServerEvent]:
        headers = self._headers({"Accept": "text/event-stream", **kwargs.pop("headers", {})})
        with self._http.stream(
            method, API + path, headers=headers, timeout=httpx.Timeout(30.0, read=120.0), **kwargs
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for(response)
            for event in iter_events(response):
                yield event
                if event.event == "chat.end":
                    return

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        return self._all(f"/chat/sessions/{session_id}/messages/")

    # --- chat over the WebSocket -------------------------------------------------------------
    def socket(self, *, open_timeout: float = 10.0) -> ChatSocket:
        """The chat socket, authenticated by the API key (``Sec-WebSocket-Protocol``, never the URL)
        or the access token."""
        return ChatSocket(self, open_timeout=open_timeout)

    # --- to-dos and usage --------------------------------------------------------------------
    def create_todo(self, title: str, **fields: Any) -> Task:
        return cast(Task, self.request("POST", "/tasks/", json={"title": title, **fields}))

    def list_tasks(self, **filters: str) -> list[Task]:
        return cast(list[Task], self._all("/tasks/", params=filters))

    def complete_todo(self, task_id: str) -> Task:
        return cast(Task, self.request("PATCH", f"/tasks/{task_id}/complete/"))

    def delete_task(self, task_id: str) -> None:
        self.request("DELETE", f"/tasks/{task_id}/")

    def usage(self, *, tenant_wide: bool = False) -> dict[str, Any]:
        return cast(dict[str, Any], self.request("GET", "/usage/", params={"scope": "tenant"} if tenant_wide else None))

    # --- pagination ----------------------------------------------------------------------------
    def _all(self, path: str, params: dict[str, Any] | None = None, *, limit: int = 10_000) -> list[dict[str, Any]]:
        """Every row of a paginated list (following ``next``)."""
        rows: list[dict[str, Any]] = []
        page: Page = self.request("GET", path, params=params)
        while True:
            rows.extend(page["results"] if isinstance(page, dict) else page)
            if not isinstance(page, dict) or not page.get("next") or len(rows) >= limit:
                return rows
            next_url = urlsplit(page["next"])
            page = self.request(
                "GET", next_url.path.removeprefix(API) + (f"?{next_url.query}" if next_url.query else "")
            )


class ChatSocket:
    """A synchronous chat socket (``websockets.sync``): :meth:`ask` streams events until ``chat.end``."""

    def __init__(self, client: DocuMind, *, open_timeout: float = 10.0) -> None:
        from websockets.sync.client import connect

        parts = urlsplit(client.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, "/ws/chat/", "", ""))
        subprotocols = ["documind"]
        if client.api_key:
            subprotocols.append(f"apikey.{client.api_key}")
        elif client.tokens and client.tokens.get("access"):
            url += f"?token={client.tokens['access']}"
        else:
            raise DocuMindError(0, "not_authenticated", "Sign in or give an API key first.")
        # websockets 15+ wants connect() as a context manager: enter it here, exit it in close().
        self._connection = connect(
            url,
            subprotocols=subprotocols,  # type: ignore[arg-type]
            origin=f"{parts.scheme}://{parts.netloc}",  # type: ignore[arg-type]
            open_timeout=open_timeout,
        )
        self._ws = self._connection.__enter__()

    def __enter__(self) -> ChatSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._connection.__exit__(None, None, None)

    def send(self, frame: dict[str, Any]) -> None:
        self._ws.send(json.dumps(frame))

    def recv(self, timeout: float | None = 60.0) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        try:
            return cast(dict[str, Any], json.loads(self._ws.recv(timeout=timeout)))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            raise DocuMindError(code, "socket_closed", f"The socket closed ({code}).") from exc
        except TimeoutError as exc:
            raise TimeoutWaiting(0, "timeout", "No event arrived in time.") from exc

    def ask(self, content: str, *, session_id: str | None = None, **options: Any) -> Iterator[dict[str, Any]]:
        """Ask and yield ``chat.start``, ``chat.token``... up to ``chat.end``; an ``error`` event raises."""
        frame: dict[str, Any] = {"type": "chat.message", "content": content, **options}
        if session_id:
            frame["session_id"] = session_id
        self.send(frame)
        yield from self._until_end()

    def resume(self, message_id: str, offset: int = 0) -> Iterator[dict[str, Any]]:
        """Re-attach to an answer after a reconnect, from ``offset`` characters."""
        self.send({"type": "chat.resume", "message_id": message_id, "offset": offset})
        yield from self._until_end()

    def cancel(self) -> None:
        self.send({"type": "chat.cancel"})

    def _until_end(self) -> Iterator[dict[str, Any]]:
        while True:
            event = self.recv()
            if event.get("type") in ("document.status", "task.progress", "pong"):
                continue
            if event.get("type") == "error" and "message_id" not in (event.get("error", {}).get("details") or {}):
                raise DocuMindError.from_envelope(400, event)
            yield event
            if event.get("type") == "chat.end":
                return
