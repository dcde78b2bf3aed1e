"""The Python client (clients/python) against the real server: daphne and a Celery worker on the
test database. A person signs in and makes a key; a script with the key uploads and waits, searches,
chats (JSON and the socket), keeps a to-do and reads its usage; scopes and revocation surface as
``DocuMindError`` with the API's error types."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from documind_client import DocuMind, DocuMindError

from accounts.models import User
from tests.documents.pdfs import make_pdf
from tests.factories import TenantFactory, UserFactory
from tests.subprocesses import build_subprocess_env, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PASSWORD = "correct-horse-battery-1"
PAGES = [
    "Welcome to the handbook of the Lighthouse Company. It explains how we work.",
    "Vacation policy. Every employee receives twenty-five days of paid vacation per year.",
]


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    """Where the server's e-mails land (Django's file backend: the sign-in codes)."""
    folder = tmp_path / "mail"
    folder.mkdir()
    return folder


@pytest.fixture
def web(tmp_path: Path, mail_dir: Path) -> Iterator[str]:
    """daphne alone, for what needs no worker (signing in, projects)."""
    env = build_subprocess_env(
        EMBEDDING_PROVIDER="hashing", CHAT_PROVIDER="extractive", OPENAI_API_KEY="", EMAIL_FILE_PATH=str(mail_dir)
    )
    with daphne_server(env, tmp_path / "daphne.log") as base:
        yield base


@pytest.fixture
def server(web: str, celery_worker_proc: Any) -> str:
    """daphne and a Celery worker (ingestion)."""
    return web


@pytest.fixture
def admin(db: Any) -> User:
    tenant = TenantFactory(slug="lighthouse", name="Lighthouse")
    return UserFactory(tenant=tenant, email="admin@lighthouse.test", role=User.Role.ADMIN)


def test_a_script_with_an_api_key_does_its_work(server: str, admin: User) -> None:
    with DocuMind(server, tenant="lighthouse") as person:
        person.login(admin.email, PASSWORD)
        assert person.me()["email"] == admin.email
        created = person.create_api_key("nightly-import", ["documents:read", "documents:write", "search", "chat"])
        raw = created["key"]
        assert [k["name"] for k in person.list_api_keys()] == ["nightly-import"]
        assert "key" not in person.list_api_keys()[0]

    with DocuMind(server, api_key=raw) as script:  # no tenant: the key implies it
        document = script.upload_and_wait(make_pdf(PAGES), filename="handbook.pdf", title="Handbook", timeout=90)
        assert document["status"] == "ready" and document["chunk_count"] >= 1
        hits = script.search("vacation days", top_k=3)
        assert hits and hits[0]["document_id"] == document["id"]

        session = script.create_session("HR")
        answer = script.ask(session["id"], "How many vacation days do I get?")
        assert "twenty-five" in answer["content"] and answer["citations"]

        with script.socket() as ws:
            events = list(ws.ask("How many days of paid vacation?", session_id=session["id"]))
        assert events[0]["type"] == "chat.start" and events[-1]["type"] == "chat.end"
        assert "twenty-five" in events[-1]["content"]
        assert "".join(e["delta"] for e in events if e["type"] == "chat.token") == events[-1]["content"]

        todo = script.create_todo("Re-run the import")
        assert script.complete_todo(todo["id"])["status"] == "completed"
        assert script.usage()["last_24h"]["requests"] >= 2
        assert [m["role"] for m in script.messages(session["id"])][:2] == ["user", "assistant"]

    with DocuMind(server, tenant="lighthouse") as person:
        person.login(admin.email, PASSWORD)
        person.revoke_api_key(created["id"])
    with DocuMind(server, api_key=raw) as script, pytest.raises(DocuMindError) as revoked:
        script.list_documents()
    assert revoked.value.status == 401 and revoked.value.type == "authentication_failed"


def test_scopes_and_bad_keys_surface_as_errors(server: str, admin: User) -> None:
    with DocuMind(server, tenant="lighthouse") as person:
        person.login(admin.email, PASSWORD)
        reader = person.create_api_key("reader", ["documents:read"])["key"]
        with pytest.raises(DocuMindError) as minting:
            DocuMind(server, api_key=person.create_api_key("admin-key", ["admin"])["key"]).create_api_key("x", ["chat"])
        assert minting.value.status == 403 and minting.value.type == "insufficient_scope"

    with DocuMind(server, api_key=reader) as script:
        assert script.list_documents() == []
        with pytest.raises(DocuMindError) as denied:
            script.upload(make_pdf(PAGES), filename="x.pdf")
        assert (denied.value.status, denied.value.type) == (403, "insufficient_scope")
        assert denied.value.request_id
        with script.socket() as ws, pytest.raises(DocuMindError) as no_chat:
            list(ws.ask("hello"))
        assert no_chat.value.type == "insufficient_scope"

    with DocuMind(server, api_key="dmk_000000000000_" + "A" * 43) as forged, pytest.raises(DocuMindError) as bad:
        forged.list_documents()
    assert bad.value.status == 401
    with pytest.raises(DocuMindError) as wrong_password:
        DocuMind(server, tenant="lighthouse").login(admin.email, "not-the-password")
    assert wrong_password.value.type == "authentication_failed"


@pytest.fixture
def slow_model_server(tmp_path: Path, admin: User, fake_openai: Any) -> Iterator[tuple[str, str]]:
    """daphne with a chat model slow enough to cut an answer mid-way (60 words, 50 ms apart), and a
    ``chat`` key whose account has the handbook: (base URL, the key)."""
    from integrations.services import api_key_create
    from tests.chat.conftest import make_ready_document

    fake_openai.reply = " ".join(f"word{i}" for i in range(60))
    fake_openai.token_delay = 0.05
    _, raw = api_key_create(tenant=admin.tenant, created_by=admin, name="streamer", scopes=["chat"])
    key_user = User.objects.get(api_key__prefix=raw[4:16])
    make_ready_document(tenant=admin.tenant, owner=key_user, pages=PAGES)
    env = build_subprocess_env(
        EMBEDDING_PROVIDER="hashing",
        **fake_openai.process_env(),
        CHAT_PROVIDER="openai",
    )
    with daphne_server(env, tmp_path / "daphne.log") as base:
        yield base, raw


def test_streamed_answers_over_sse_survive_a_drop_and_can_be_cancelled(slow_model_server: tuple[str, str]) -> None:
    base, raw = slow_model_server
    with DocuMind(base, api_key=raw) as script:
        session = script.create_session("stream")
        stream = script.ask_stream(session["id"], "How many vacation days do I get?")
        first = [next(stream) for _ in range(3)]  # chat.start and two tokens
        stream.close()  # the connection drops
        assert first[0].event == "chat.start" and first[-1].event == "chat.token"
        message_id = first[0].data["message_id"]
        received = "".join(e.data["delta"] for e in first[1:])
        rest = list(script.resume_stream(session["id"], message_id, last_event_id=first[-1].id))
        end = rest[-1]
        assert end.event == "chat.end" and end.data["status"] == "completed"
        assert received + "".join(e.data["delta"] for e in rest if e.event == "chat.token") == end.data["content"]
        assert end.data["content"].endswith("word59")

        stream = script.ask_stream(session["id"], "And how many sick days?")
        start = next(stream)
        next(stream)
        assert script.cancel(session["id"], start.data["message_id"])["status"] == "cancelling"
        tail = list(stream)
        assert tail[-1].event == "chat.end" and tail[-1].data["status"] == "cancelled"
        with pytest.raises(DocuMindError) as finished:
            script.cancel(session["id"], start.data["message_id"])
        assert finished.value.type == "answer_finished"


def test_the_socket_resumes_an_answer_after_a_cut(slow_model_server: tuple[str, str]) -> None:
    base, raw = slow_model_server
    with DocuMind(base, api_key=raw) as script:
        session = script.create_session("resume")
        with script.socket() as ws:
            answer = ws.ask("How many vacation days do I get?", session_id=session["id"])
            first = [next(answer) for _ in range(3)]  # chat.start and two tokens
        # the socket is gone (closed mid-answer); the answer runs on at the server
        assert first[0]["type"] == "chat.start" and [e["type"] for e in first[1:]] == ["chat.token"] * 2
        message_id = first[0]["message_id"]
        received = "".join(e["delta"] for e in first[1:])
        with script.socket() as ws:
            rest = list(ws.resume(message_id, offset=len(received)))
        start, tokens, end = rest[0], [e for e in rest if e["type"] == "chat.token"], rest[-1]
        assert start["type"] == "chat.start" and start["resumed"] is True and start["message_id"] == message_id
        assert end["type"] == "chat.end" and end["status"] == "completed" and end["content"].endswith("word59")
        # nothing lost, nothing said twice: each delta starts where the last one ended
        position = len(received)
        for token in tokens:
            assert token["offset"] == position, (token, position)
            position += len(token["delta"])
        assert received + "".join(t["delta"] for t in tokens) == end["content"]
        # resuming a finished answer from its end: chat.start, then chat.end, no text again
        with script.socket() as ws:
            again = list(ws.resume(message_id, offset=len(end["content"])))
        assert "".join(e.get("delta", "") for e in again) == ""
        assert again[-1]["type"] == "chat.end" and again[-1]["content"] == end["content"]


def test_a_person_signs_in_by_code_refreshes_and_keeps_projects(web: str, admin: User, mail_dir: Path) -> None:
    from tests.e2e.client import read_code

    with DocuMind(web, tenant="lighthouse") as person:
        with pytest.raises(DocuMindError) as no_session:
            person.refresh()
        assert no_session.value.type == "not_authenticated"
        person.request_code(admin.email)
        code = read_code(mail_dir, admin.email, after=set())
        with pytest.raises(DocuMindError) as wrong:
            person.verify_code(admin.email, f"{(int(code) + 1) % 1_000_000:06d}")
        assert wrong.value.status in (400, 401) and person.tokens is None
        signed_in = person.verify_code(admin.email, code)
        assert person.me()["email"] == admin.email

        first = dict(person.refresh())
        assert first["access"] != signed_in["access"] and first["refresh"] != signed_in["refresh"]
        assert person.tokens == first and person.me()["email"] == admin.email  # the new access token is used
        second = dict(person.refresh())  # the client kept the rotated refresh token, not the spent one
        assert second["refresh"] not in (first["refresh"], signed_in["refresh"])
        with DocuMind(web, tenant="lighthouse", access_token=second["access"]) as elsewhere:
            assert elsewhere.me()["email"] == admin.email

        assert person.list_projects() == []
        handbooks = person.create_project("Handbooks", "HR policies")
        assert handbooks["name"] == "Handbooks" and handbooks["description"] == "HR policies"
        person.create_project("Contracts")
        assert [p["name"] for p in person.list_projects()] == ["Contracts", "Handbooks"]
        with pytest.raises(DocuMindError) as duplicate:
            person.create_project("Handbooks")
        assert duplicate.value.status in (400, 409)
        reader = person.create_api_key("reader", ["documents:read"])["key"]
    with DocuMind(web, api_key=reader) as script:
        assert {p["id"] for p in script.list_projects()} >= {handbooks["id"]}
        with pytest.raises(DocuMindError) as denied:
            script.create_project("From a reader")
        assert (denied.value.status, denied.value.type) == (403, "insufficient_scope")
