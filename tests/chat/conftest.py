"""Chat test fixtures: ready documents made by the real chunker/embedder/store, the fake model, sockets."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.db import transaction
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from chat import db, generation
from documents.models import Document, Project
from tenants.models import Tenant
from tests.fake_openai import FakeOpenAI
from tests.ready_documents import store_page_chunks


@pytest.fixture(scope="session", autouse=True)
def _chat_db_threads(django_db_setup: Any) -> Iterator[None]:
    """The chat's database threads keep connections: stop them before the test database is dropped."""
    yield
    db.shutdown()


@pytest.fixture(autouse=True)
def _chat_settings(settings: Any) -> None:
    """Offline by default: hashing embeddings, the extractive provider, fast progressive saves."""
    settings.EMBEDDING_PROVIDER = "hashing"
    settings.CHAT_PROVIDER = "extractive"
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = None
    settings.CHAT_SAVE_INTERVAL_MS = 20
    settings.RATELIMIT_ENABLED = False


@pytest.fixture
def openai_chat(settings: Any, fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The ``openai`` provider pointed at the fake server (no client retries unless a test sets them)."""
    settings.CHAT_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.OPENAI_MAX_RETRIES = 0
    settings.OPENAI_TIMEOUT_SECONDS = 5.0
    return fake_openai


def make_ready_document(
    *,
    tenant: Tenant,
    owner: User,
    pages: list[str],
    title: str = "Handbook",
    project: Project | None = None,
    chunk_tokens: int = 400,
) -> Document:
    """A ``ready`` document whose chunks went through the real chunker, embedder and chunk store."""
    digest = hashlib.sha256(json.dumps([title, pages, str(uuid.uuid4())]).encode()).hexdigest()
    with transaction.atomic():
        document = Document.objects.create(
            tenant=tenant,
            owner=owner,
            project=project,
            title=title,
            file=f"tenants/{tenant.pk}/documents/{digest}.pdf",
            sha256=digest,
            status=Document.Status.READY,
            page_count=len(pages),
        )
        store_page_chunks(document, pages, chunk_tokens=chunk_tokens)
    document.refresh_from_db()
    return document


HANDBOOK = [
    "Welcome to Acme. This handbook explains how we work together.",
    "Vacation policy. Every employee receives twenty-five days of paid vacation per year. "
    "Vacation requests must be approved by your manager two weeks in advance.",
    "Security policy. Laptops must use full disk encryption. Report lost devices to the security team at once.",
]


@pytest.fixture
def handbook(tenant: Tenant, user: User) -> Document:
    return make_ready_document(tenant=tenant, owner=user, pages=HANDBOOK, title="Employee Handbook")


@pytest.fixture
def ready_document() -> Callable[..., Document]:
    return make_ready_document


# --- sockets ---------------------------------------------------------------------------------


def access_token(user: User) -> str:
    """An access token like :func:`accounts.authentication.tokens_for_user` makes (no database write)."""
    token = AccessToken.for_user(user)
    token["tenant"] = str(user.tenant_id) if user.tenant_id else None
    token["role"] = user.role
    token["tv"] = user.token_version  # the session claims every token carries (accounts.tokens)
    token["fam"] = str(uuid.uuid4())
    return str(token)


class Socket:
    """A ``WebsocketCommunicator`` on ``config.asgi.application`` with JSON helpers."""

    def __init__(self, token: str | None, *, origin: bytes = b"http://testserver") -> None:
        from config.asgi import application

        path = "/ws/chat/" + (f"?token={token}" if token is not None else "")
        self.comm = WebsocketCommunicator(application, path, headers=[(b"host", b"testserver"), (b"origin", origin)])

    async def connect(self) -> tuple[bool, Any]:
        return await self.comm.connect(timeout=10)

    async def send(self, frame: dict[str, Any] | str) -> None:
        if isinstance(frame, str):
            await self.comm.send_to(text_data=frame)
        else:
            await self.comm.send_json_to(frame)

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        return await self.comm.receive_json_from(timeout=timeout)

    async def recv_until(self, type_: str, timeout: float = 15) -> list[dict[str, Any]]:
        """Every event up to and including the first of ``type_``."""
        events = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.recv(timeout=timeout)
                events.append(event)
                if event["type"] == type_:
                    return events

    async def closed_with(self, timeout: float = 5) -> int | None:
        output = await self.comm.receive_output(timeout=timeout)
        assert output["type"] == "websocket.close", output
        return output.get("code")

    async def nothing(self, timeout: float = 0.3) -> bool:
        return await self.comm.receive_nothing(timeout=timeout)

    async def close(self) -> None:
        await self.comm.disconnect()


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Socket]]:
    """Open sockets for users (or raw tokens); all closed and all generations drained afterwards."""
    opened: list[Socket] = []

    def open_socket(user: User | None = None, *, token: str | None = None, **kwargs: Any) -> Socket:
        if user is not None:
            token = access_token(user)
        socket = Socket(token, **kwargs)
        opened.append(socket)
        return socket

    yield open_socket
    await generation.drain(timeout=15)
    for socket in opened:
        with contextlib.suppress(Exception):  # already closed by the test or the server
            await socket.close()


async def connected(factory: Callable[..., Socket], user: User) -> Socket:
    socket = factory(user)
    ok, _ = await socket.connect()
    assert ok
    return socket


def tokens_text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "chat.token")
