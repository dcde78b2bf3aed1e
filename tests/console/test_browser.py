"""The console in a real browser (see conftest): sign in, upload and watch, chat, admin pages, screenshots."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.authentication import tokens_for_user
from accounts.models import User
from chat.models import Message
from documents.models import Document
from tests.accounts.conftest import PASSWORD
from tests.console.conftest import MAX_UPLOAD_MB, Console, screenshot
from tests.documents.pdfs import make_pdf
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.browser]

FILLER = (
    "The committee reviewed the minutes of the previous meeting and approved them without changes. "
    "Members discussed the schedule for the coming quarter and agreed to meet again next month. "
)
PAGES = [
    FILLER * 3,
    FILLER * 2 + "The lighthouse keeper's cat is named Marmalade and sleeps on the third step. " + FILLER * 2,
    FILLER * 3,
]
QUESTION = "What is the lighthouse keeper's cat called?"
LONG_REPLY = "The cat is called Marmalade [1]. " + " ".join(f"word{i}" for i in range(80)) + " The end."


def sign_in(page: Any, user: User, *, password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Workspace").fill(user.tenant.slug)
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/console/documents")
    expect(page.get_by_role("heading", name="Documents")).to_be_visible()


def upload_ready_document(console: Console, user: User, *, title: str = "Committee minutes") -> Document:
    """Upload through the API of the running server and wait for the worker to make it ready."""
    access = tokens_for_user(user)["access"]
    response = httpx.post(
        f"{console.base}/api/v1/documents/",
        headers={"Authorization": f"Bearer {access}", "X-Tenant-ID": user.tenant.slug},
        files={"file": ("minutes.pdf", make_pdf(PAGES), "application/pdf")},
        data={"title": title},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        document = Document.objects.get(pk=response.json()["id"])
        if document.status in ("ready", "failed"):
            assert document.status == "ready", document.error
            return document
        time.sleep(0.3)
    raise AssertionError("the document did not become ready")


def assistant(page: Any) -> Any:
    return page.locator("#log article.msg.assistant").last


def ask(page: Any, question: str = QUESTION) -> None:
    page.get_by_label("Question").fill(question)
    page.get_by_role("button", name="Send").click()


# --- sign in ----------------------------------------------------------------------------------


def test_sign_in_with_a_password_and_sign_out_ends_the_session_on_the_server(console: Console, user: User) -> None:
    page = console.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/console/$"))
    screenshot(page, "sign-in")
    sign_in(page, user)
    expect(page.locator("link[rel=icon]")).to_have_attribute("href", re.compile(r"favicon\.svg$"))
    cookie = next(c for c in console.context.cookies() if c["name"] == "documind_refresh")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => Object.keys(localStorage).map(k => localStorage.getItem(k)).join(' ')") == "acme"
    assert "documind_refresh" not in page.evaluate("() => document.cookie")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/$"))
    expect(page.get_by_label("Workspace")).to_have_value("acme")  # remembered
    with pytest.raises(TokenError):
        RefreshToken(cookie["value"])  # revoked on the server
    page.goto("/console/chat")
    expect(page).to_have_url(re.compile(r"/console/\?next=%2Fconsole%2Fchat$"))


def test_wrong_password_is_an_error_in_words(console: Console, user: User) -> None:
    console.allow_error(r"status of 401")
    page = console.new_page()
    page.goto("/console/")
    page.get_by_label("Workspace").fill("acme")
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password").fill("not-the-password")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Invalid email or password.")


def test_sign_in_with_an_emailed_code_using_the_keyboard(console: Console, user: User) -> None:
    page = console.new_page()
    page.goto(f"/console/?workspace=acme&email={user.email}")
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_role("status").filter(has_text="code is on its way")).to_be_visible()
    code_box = page.get_by_label("Code", exact=True)
    expect(code_box).to_be_focused()
    [mail] = [m for m in console.server.mails() if user.email in m]
    assert f"{'/console/?workspace=acme'}" in mail
    code = re.findall(r"^\s+(\d{6})\s*$", mail, flags=re.MULTILINE)[-1]
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/documents")


def test_two_tabs_refreshing_at_once_stay_signed_in(console: Console, user: User) -> None:
    first = console.new_page()
    sign_in(first, user)
    second = console.new_page()
    second.goto("/console/documents")
    expect(second.get_by_role("heading", name="Documents")).to_be_visible()
    start = "() => { window.__refresh = import('/static/console/js/session.js').then(m => m.refresh()).then(() => 'ok', e => 'failed ' + e.status); }"
    for _ in range(3):
        first.evaluate(start)
        second.evaluate(start)
        assert first.evaluate("() => window.__refresh") == "ok"
        assert second.evaluate("() => window.__refresh") == "ok"
    for page in (first, second):
        page.reload()
        expect(page.get_by_role("heading", name="Documents")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/console/documents$"))


# --- documents --------------------------------------------------------------------------------


def test_upload_a_pdf_and_watch_it_turn_ready_live(console: Console, user: User) -> None:
    page = console.new_page()
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    sign_in(page, user)
    expect(page.get_by_text("No documents yet")).to_be_visible()
    page.get_by_label("New project").fill("Minutes")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_label("Project", exact=True)).to_have_value(re.compile(".+"))
    list_calls = len([u for u in console.requests if re.search(r"/api/v1/documents/\?", u)])

    pdf = make_pdf(PAGES)
    page.get_by_label("Upload PDF").set_input_files([{"name": "minutes.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    row = page.locator("#documents tbody tr").filter(has_text="minutes")
    expect(row).to_be_visible()
    expect(row.locator(".status")).to_have_text("Ready", timeout=90_000)
    expect(row.locator("td").nth(2)).to_have_text("3")  # pages
    # it turned ready from the socket's events, not from reloading the list
    assert len([u for u in console.requests if re.search(r"/api/v1/documents/\?", u)]) == list_calls
    statuses = [re.search(r'"status": "(\w+)"', f).group(1) for f in frames if '"document.status"' in f]
    assert "processing" in statuses and statuses[-1] == "ready", statuses
    document = Document.objects.get(owner=user)
    assert document.project is not None and document.project.name == "Minutes"

    # the same bytes again: the page names the document they match
    page.get_by_label("Upload PDF").set_input_files([{"name": "copy.pdf", "mimeType": "application/pdf", "buffer": pdf}])
    expect(page.get_by_text("“copy.pdf” is already here: it is the same file as “minutes”.")).to_be_visible()
    screenshot(page, "documents")

    row.get_by_role("button", name="Reprocess minutes").click()
    expect(row.locator(".status")).to_have_text("Ready", timeout=90_000)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#documents tbody tr").filter(has_text="minutes").get_by_role("button", name="Delete minutes").click()
    expect(page.get_by_text("No documents yet")).to_be_visible()
    assert not Document.objects.filter(owner=user).exists()


def test_oversized_and_non_pdf_files_are_refused_with_their_reasons(console: Console, user: User) -> None:
    console.allow_error(r"status of 415")
    page = console.new_page()
    sign_in(page, user)
    before = len(console.requests)
    big = b"%PDF-1.4\n" + b"0" * (MAX_UPLOAD_MB * 1024 * 1024 + 10)
    page.get_by_label("Upload PDF").set_input_files([{"name": "huge.pdf", "mimeType": "application/pdf", "buffer": big}])
    expect(page.get_by_text(f"the limit is {MAX_UPLOAD_MB} MB per file. It was not uploaded.")).to_be_visible()
    assert not [u for u in console.requests[before:] if "/api/v1/documents" in u], "refused before any upload"

    page.get_by_label("Upload PDF").set_input_files(
        [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just some text, not a PDF"}]
    )
    expect(page.locator("#upload-messages li.error").filter(has_text="“notes.txt” was not uploaded:")).to_be_visible()
    message = page.locator("#upload-messages li.error").filter(has_text="notes.txt").inner_text()
    assert "PDF" in message, message
    assert not Document.objects.exists()
