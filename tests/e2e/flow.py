"""The end-to-end walk shared by both modes: sign in, upload, status to ready, search, ask, cancel (also
through another web process), resume.

Each step takes the web(s) to talk to, so the distributed test can upload through one daphne and
listen on another. The fake OpenAI server (tests/fake_openai.py) is the model; its recorded requests
show what the product sent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.documents.pdfs import MINUTES_PAGES, MINUTES_QUESTION, make_pdf
from tests.e2e.client import Api, Event, Socket, streamed_text
from tests.fake_openai import FakeOpenAI
from tests.subprocesses import BASE_DIR

ANSWER = "The cat is called Marmalade [1]."
LONG_ANSWER = " ".join(f"word{i}" for i in range(60)) + " [1]."


def stack_env_overrides(fake: FakeOpenAI, mail_dir: Path) -> dict[str, str]:
    """What every stack process of the end-to-end tests gets on top of the mode's settings."""
    mail_dir.mkdir(parents=True, exist_ok=True)
    return {
        **fake.process_env(),
        "CHAT_PROVIDER": "openai",
        "EMBEDDING_PROVIDER": "hashing",
        "CHUNK_TOKENS": "60",
        "CHUNK_OVERLAP": "6",
        "EMAIL_FILE_PATH": str(mail_dir),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }


def create_tenant(env: dict[str, str], slug: str, admin_email: str, *, settings_json: str | None = None) -> None:
    """``manage.py create_tenant`` (the operator's command) against the stack's database."""
    argv = [sys.executable, "manage.py", "create_tenant", slug, "--name", slug.title(), "--admin-email", admin_email]
    if settings_json:
        argv += ["--tenant-settings", settings_json]
    result = subprocess.run(argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class Walk:
    """What the walk established, for the steps after it."""

    api: Api
    document_id: str = ""
    statuses: list[Event] = field(default_factory=list)


def upload_and_follow(api: Api, socket: Socket) -> tuple[str, list[Event]]:
    """Upload the PDF over REST; return its id and its ``document.status`` events up to ready."""
    document = api.upload("minutes.pdf", make_pdf(MINUTES_PAGES), title="Committee minutes")
    assert document["status"] in ("pending", "processing"), document
    statuses = socket.document_statuses(document["id"])
    return document["id"], statuses


def check_statuses(statuses: list[Event]) -> None:
    kinds = [event["status"] for event in statuses]
    assert kinds[-1] == "ready", statuses
    assert "processing" in kinds, kinds
    progress = [event["progress"] for event in statuses if event.get("progress") is not None]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    assert statuses[-1].get("progress") in (100, 1, 1.0, None) or progress[-1] >= progress[0]


def check_search(api: Api, document_id: str) -> None:
    for mode in ("keyword", "semantic", "hybrid"):
        response = api.post("/api/v1/search/", {"query": "lighthouse keeper cat Marmalade", "top_k": 3, "mode": mode})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert results, (mode, response.json())
        best = results[0]
        assert best["document_id"] == document_id, best
        assert "Marmalade" in best["text"], (mode, best)
        assert best["page_start"] == best["page_end"] == 2, (mode, best)


def cite_the_cat(body: dict[str, Any]) -> str:
    """The fake model's answer: it cites the numbered source that holds the cat's name, as a model would
    (which number that is depends on the retrieval's ranking, arbitrary with the fake's random vectors)."""
    system = body["messages"][0]["content"]
    numbers = [int(n) for n, text in re.findall(r"^\[(\d+)\] [^\n]*\n(.*?)(?=^\[\d+\] |\Z)", system, re.M | re.S)
               if "Marmalade" in text]  # fmt: skip
    return ANSWER.replace("[1]", f"[{numbers[0]}]") if numbers else "The documents do not say."


def ask(socket: Socket, fake: FakeOpenAI, document_id: str, *, question: str = MINUTES_QUESTION) -> list[Event]:
    """Ask over the socket; check a streamed, cited answer; return its events."""
    fake.reply = cite_the_cat
    socket.send({"type": "chat.message", "content": question})
    events = socket.answer(timeout=60)
    assert events[0]["type"] == "chat.start", events
    end = events[-1]
    assert end["status"] == "completed", events
    tokens = [e for e in events if e["type"] == "chat.token"]
    assert len(tokens) > 3, events  # streamed, not one block
    assert streamed_text(events) == end["content"]
    assert end["content"].startswith("The cat is called Marmalade ["), end["content"]
    [citation] = end["citations"]
    assert citation["document_id"] == document_id and citation["document_title"] == "Committee minutes"
    assert citation["page_start"] == citation["page_end"] == 2
    assert "Marmalade" in citation["snippet"]
    system = fake.requests_to("chat")[-1].body["messages"][0]["content"]
    assert f"[{citation['n']}] Committee minutes (page 2)" in system
    return events


def cancel_one(api: Api, socket: Socket, fake: FakeOpenAI) -> None:
    """Ask a slowly streamed question and cancel it after its first tokens: ends ``cancelled``, saved so."""
    fake.reply = LONG_ANSWER
    fake.token_delay = 0.1
    socket.send({"type": "chat.message", "content": MINUTES_QUESTION})
    start = socket.wait_for(lambda e: e["type"] == "chat.start", timeout=30, what="chat.start")
    message_id = start["message_id"]
    socket.wait_for(lambda e: e["type"] == "chat.token" and e["message_id"] == message_id, timeout=30)
    socket.send({"type": "chat.cancel", "message_id": message_id})
    events = socket.answer(message_id, timeout=30)
    end = events[-1]
    assert end["status"] == "cancelled", events
    assert 0 < len(end["content"]) < len(LONG_ANSWER)
    assert LONG_ANSWER.startswith(end["content"])
    saved = message_of(api, start["session_id"], message_id)
    assert saved["status"] == "cancelled" and saved["content"] == end["content"], saved


def start_slow_answer(socket: Socket, fake: FakeOpenAI) -> tuple[Event, str]:
    """Ask on ``socket`` for a slowly streamed answer: its ``chat.start`` and first token's text."""
    fake.reply = LONG_ANSWER
    fake.token_delay = 0.1
    socket.send({"type": "chat.message", "content": MINUTES_QUESTION})
    start = socket.wait_for(lambda e: e["type"] == "chat.start", timeout=30, what="chat.start")
    first = socket.wait_for(lambda e: e["type"] == "chat.token" and e["message_id"] == start["message_id"], timeout=30)
    return start, first["delta"]


def cancel_through(other: Api, socket: Socket, fake: FakeOpenAI) -> None:
    """Ask on ``socket``'s web, cancel over REST through ``other`` (another web process): 202, the answer
    ends ``cancelled`` on the socket with part of its text, saved so; a second cancel is 409."""
    start, said = start_slow_answer(socket, fake)
    cancel = f"/api/v1/chat/sessions/{start['session_id']}/messages/{start['message_id']}/cancel"
    response = other.post(cancel)
    assert response.status_code == 202, response.text
    events = socket.answer(start["message_id"], timeout=30)
    end = events[-1]
    assert end["status"] == "cancelled", events
    assert end["content"] == said + streamed_text(events) and 0 < len(end["content"]) < len(LONG_ANSWER)
    saved = message_of(other, start["session_id"], start["message_id"])
    assert saved["status"] == "cancelled" and saved["content"] == end["content"], saved
    again = other.post(cancel)
    assert again.status_code == 409 and again.json()["error"]["type"] == "answer_finished", again.text


def message_of(api: Api, session_id: str, message_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/chat/sessions/{session_id}/messages/")
    assert response.status_code == 200, response.text
    body = response.json()
    messages = body["results"] if isinstance(body, dict) else body
    return next(m for m in messages if str(m["id"]) == message_id)


def resume_one(api: Api, first: Socket, reconnect: Any, fake: FakeOpenAI) -> None:
    """Drop the socket mid-answer, reconnect (``reconnect()`` opens a new Socket) and ``chat.resume``."""
    fake.reply = LONG_ANSWER
    fake.token_delay = 0.05
    first.send({"type": "chat.message", "content": MINUTES_QUESTION})
    start = first.wait_for(lambda e: e["type"] == "chat.start", timeout=30, what="chat.start")
    message_id = start["message_id"]
    received = []
    while len(received) < 3:
        received.append(first.wait_for(lambda e: e["type"] == "chat.token", timeout=30, what="chat.token"))
    first.close()
    before = streamed_text(received)
    with reconnect() as second:
        second.send({"type": "chat.resume", "message_id": message_id, "offset": len(before)})
        events = second.answer(message_id, timeout=60)
    assert events[0]["type"] == "chat.start" and events[0]["resumed"] is True, events
    assert events[-1]["status"] == "completed", events
    tokens = [e for e in events if e["type"] == "chat.token"]
    assert tokens and tokens[0]["offset"] == len(before), tokens[:2]
    assert streamed_text(received + tokens) == LONG_ANSWER
    assert events[-1]["content"] == LONG_ANSWER
    assert message_of(api, start["session_id"], message_id)["status"] == "completed"
