"""The console in a real browser (see conftest): sign in, upload and watch, chat, admin pages, screenshots."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.authentication import tokens_for_user
from accounts.models import User
from chat.models import Message
from documents.models import Document
from tests.accounts.conftest import PASSWORD
from tests.console.conftest import MAX_UPLOAD_MB, Console, screenshot
from tests.documents.pdfs import MINUTES_PAGES, MINUTES_QUESTION, make_pdf

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.chromium]

LONG_REPLY = "The cat is called Marmalade [1]. " + " ".join(f"word{i}" for i in range(80)) + " The end."


def sign_in(page: Any, user: User, *, password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Workspace").fill(user.tenant.slug)
    page.get_by_label("Email", exact=True).fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/console/documents", wait_until="commit")
    expect(page.locator("#documents[data-loaded]")).to_be_attached()


def upload_ready_document(console: Console, user: User, *, title: str = "Committee minutes") -> Document:
    """Upload through the API of the running server and wait for the worker to make it ready."""
    access = tokens_for_user(user)["access"]
    response = httpx.post(
        f"{console.base}/api/v1/documents/",
        headers={"Authorization": f"Bearer {access}", "X-Tenant-ID": user.tenant.slug},
        files={"file": ("minutes.pdf", make_pdf(MINUTES_PAGES), "application/pdf")},
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


def ask(page: Any, question: str = MINUTES_QUESTION) -> None:
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

    pdf = make_pdf(MINUTES_PAGES)
    page.get_by_label("Upload PDF").set_input_files(
        [{"name": "minutes.pdf", "mimeType": "application/pdf", "buffer": pdf}]
    )
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
    page.get_by_label("Upload PDF").set_input_files(
        [{"name": "copy.pdf", "mimeType": "application/pdf", "buffer": pdf}]
    )
    expect(page.get_by_text("“copy.pdf” is already here: it is the same file as “minutes”.")).to_be_visible()
    screenshot(page, "documents")

    row.get_by_role("button", name="Reprocess minutes").click()
    expect(page.get_by_role("status").filter(has_text="Processing “minutes” again.")).to_be_visible()
    expect(row.locator(".status")).to_have_text("Ready", timeout=90_000)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#documents tbody tr").filter(has_text="minutes").get_by_role("button", name="Delete minutes").click()
    expect(page.get_by_text("No documents yet")).to_be_visible()
    assert not Document.objects.filter(owner=user).exists()


def test_oversized_and_non_pdf_files_are_refused_with_their_reasons(console: Console, user: User) -> None:
    console.allow_error(r"status of 415")
    page = console.new_page()
    sign_in(page, user)
    expect(page.get_by_text("No documents yet")).to_be_visible()
    before = len(console.requests)
    big = b"%PDF-1.4\n" + b"0" * (MAX_UPLOAD_MB * 1024 * 1024 + 10)
    page.get_by_label("Upload PDF").set_input_files(
        [{"name": "huge.pdf", "mimeType": "application/pdf", "buffer": big}]
    )
    expect(page.get_by_text(f"the limit is {MAX_UPLOAD_MB} MB per file. It was not uploaded.")).to_be_visible()
    assert not [u for u in console.requests[before:] if u.endswith("/api/v1/documents/")], "refused before any upload"

    page.get_by_label("Upload PDF").set_input_files(
        [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just some text, not a PDF"}]
    )
    expect(page.locator("#upload-messages li.error").filter(has_text="“notes.txt” was not uploaded:")).to_be_visible()
    message = page.locator("#upload-messages li.error").filter(has_text="notes.txt").inner_text()
    assert "PDF" in message, message
    assert not Document.objects.exists()


def test_several_files_at_once_and_a_dropped_file_are_uploaded(console: Console, user: User) -> None:
    page = console.new_page()
    sign_in(page, user)
    expect(page.get_by_text("No documents yet")).to_be_visible()
    files = {
        name: make_pdf([f"The {name} report of the harbour committee, with its budget and its schedule."])
        for name in ("first", "second", "dropped")
    }
    page.get_by_label("Upload PDF").set_input_files(
        [{"name": f"{name}.pdf", "mimeType": "application/pdf", "buffer": files[name]} for name in ("first", "second")]
    )
    # drag and drop: a DataTransfer holding the third file, built in the page from its bytes
    transfer = page.evaluate_handle(
        """([name, data]) => {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: "application/pdf" }));
          return transfer;
        }""",
        ["dropped.pdf", base64.b64encode(files["dropped"]).decode()],
    )
    page.locator("#dropzone").dispatch_event("drop", {"dataTransfer": transfer})
    for name in files:
        row = page.locator("#documents tbody tr").filter(has_text=name)
        expect(row.locator(".status")).to_have_text("Ready", timeout=90_000)
    stored = Document.objects.filter(owner=user).values_list("original_filename", "sha256")
    assert sorted(name for name, _ in stored) == ["dropped.pdf", "first.pdf", "second.pdf"]
    assert len({digest for _, digest in stored}) == 3


def test_a_quota_refusal_says_how_long_to_wait_in_words(console: Console, user: User) -> None:
    upload_ready_document(console, user)
    tenant = user.tenant
    tenant.settings = {**tenant.settings, "user_daily_token_quota": 1}
    tenant.save()
    page = console.new_page()
    sign_in(page, user)
    page.goto("/console/chat")
    ask(page)
    refusal = page.get_by_text(re.compile(r"quota.* Try again in \d+ (seconds|minutes|hours)\.$")).first
    expect(refusal).to_be_visible(timeout=15_000)
    # the quota resets at midnight UTC: the wait is said in the unit that fits it, not in raw seconds
    now = datetime.now(UTC)
    seconds = (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()
    number, unit = re.search(r"Try again in (\d+) (\w+)\.$", refusal.inner_text()).groups()
    expected = (
        ("seconds", seconds)
        if seconds < 90
        else ("minutes", seconds / 60)
        if seconds < 5400
        else ("hours", seconds / 3600)
    )
    assert unit == expected[0] and abs(int(number) - expected[1]) <= 1.5, (number, unit, seconds)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    assert not Message.objects.filter(session__user=user, role="assistant").exists()


# --- chat -------------------------------------------------------------------------------------

STREAMING_TEXT = """() => {
  const box = document.querySelector('#log article.msg.assistant:last-of-type .content');
  const streaming = !document.getElementById('stop').disabled;
  return box && box.textContent.length > 0 && streaming ? box.textContent : null;
}"""


def test_ask_and_see_a_streamed_cited_answer_with_links_to_the_page(console: Console, user: User) -> None:
    document = upload_ready_document(console, user)
    console.server.fake.reply = LONG_REPLY
    console.server.fake.token_delay = 0.03
    page = console.new_page()
    sign_in(page, user)
    page.get_by_role("link", name="Chat").click()
    page.wait_for_url("**/console/chat", wait_until="commit")
    expect(page.get_by_label("Question")).to_be_focused()
    ask(page)
    partial = page.wait_for_function(STREAMING_TEXT).json_value()
    assert 0 < len(partial) < len(LONG_REPLY), "tokens arrive before the end"
    expect(page.get_by_role("button", name="Stop")).to_be_disabled(timeout=30_000)

    answer = assistant(page)
    message = Message.objects.get(role="assistant", session__user=user)
    assert message.status == "completed" and message.content == LONG_REPLY
    expect(answer.locator(".content")).to_have_text(LONG_REPLY)  # nothing lost, nothing twice
    citation = message.citations[0]
    assert citation["document_id"] == str(document.pk) and citation["page_start"] == 2

    link = answer.locator(".content a.cite").first
    expect(link).to_have_text("[1]")
    href = link.get_attribute("href")
    assert re.fullmatch(rf"{re.escape(console.base)}/files/[^#/]+#page=2", href), href
    assert link.get_attribute("target") == "_blank" and "noopener" in link.get_attribute("rel")
    source = answer.get_by_role("list", name="Sources").get_by_role("link", name="Committee minutes")
    expect(source).to_have_attribute("href", href)
    expect(answer.get_by_role("list", name="Sources")).to_contain_text("Committee minutes, page 2")
    screenshot(page, "chat")

    # the link opens the signed file URL at the page in a new tab: Chromium's PDF viewer shows it, or
    # (a build without the viewer) the tab downloads it
    downloads: list[Any] = []
    console.context.on("page", lambda opened: opened.on("download", lambda download: downloads.append(download)))
    with page.expect_popup() as popup_info:
        link.click()
    popup = popup_info.value
    deadline = time.monotonic() + 30
    while popup.url != href and not downloads and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    if downloads:
        assert downloads[0].url.split("#")[0] == href.split("#")[0]
        assert Path(downloads[0].path()).read_bytes() == document.file.open("rb").read()
    else:
        assert popup.url == href, popup.url
    popup.close()
    response = console.context.request.get(href.split("#")[0])
    assert response.status == 200 and response.headers["content-type"] == "application/pdf"

    # the session is listed and opens again with its cited answer
    page.reload()
    page.get_by_role("link", name=message.session.title).click()
    expect(assistant(page).locator(".content a.cite").first).to_have_attribute("href", re.compile(r"#page=2$"))

    page.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("img", name=re.compile("Tokens used"))).to_be_visible()
    expect(page.get_by_role("heading", name="Today's quota")).to_be_visible()
    # the figures are the server's: requests and tokens of both windows, what is left today
    usage = httpx.get(
        f"{console.base}/api/v1/usage/",
        headers={"Authorization": f"Bearer {tokens_for_user(user)['access']}", "X-Tenant-ID": user.tenant.slug},
        timeout=30,
    ).json()
    assert usage["last_24h"]["requests"] >= 1 and usage["last_24h"]["total_tokens"] > 0, usage
    for key, label in (("last_24h", "Last 24 hours"), ("last_7d", "Last 7 days")):
        card = page.get_by_role("region", name=label)
        expect(card.locator("dt:has-text('Requests') + dd")).to_have_text(f"{usage[key]['requests']:,}")
        expect(card.locator("dt:has-text('All tokens') + dd")).to_have_text(f"{usage[key]['total_tokens']:,}")
    quota = page.get_by_role("region", name="Today's quota")
    if usage["remaining_today"] is None:
        expect(quota).to_contain_text("No daily limit.")
    else:
        expect(quota).to_contain_text(f"{usage['remaining_today']:,} tokens left today.")
    screenshot(page, "usage")


def test_stop_cancels_the_answer(console: Console, user: User) -> None:
    upload_ready_document(console, user)
    console.server.fake.reply = LONG_REPLY
    console.server.fake.token_delay = 0.1
    page = console.new_page()
    sign_in(page, user)
    page.goto("/console/chat")
    ask(page)
    page.wait_for_function(STREAMING_TEXT)
    page.get_by_role("button", name="Stop").click()
    expect(assistant(page).locator(".note")).to_have_text("Stopped.", timeout=15_000)
    message = Message.objects.get(role="assistant", session__user=user)
    assert message.status == "cancelled" and len(message.content) < len(LONG_REPLY)
    expect(assistant(page).locator(".content")).to_have_text(message.content)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()


def test_a_cut_socket_reconnects_and_resumes_without_losing_or_repeating_text(console: Console, user: User) -> None:
    upload_ready_document(console, user)
    console.server.fake.reply = LONG_REPLY
    console.server.fake.token_delay = 0.05
    page = console.new_page()
    routes: list[Any] = []

    def through(ws: Any) -> None:
        ws.connect_to_server()
        routes.append(ws)

    sign_in(page, user)
    page.route_web_socket(re.compile(r"/ws/chat/"), through)  # the chat page's sockets from here on
    page.goto("/console/chat")
    ask(page)
    before = page.wait_for_function(STREAMING_TEXT).json_value()
    assert len(routes) == 1
    routes[0].close(code=4000, reason="cut by the test")  # the page's socket drops mid-answer
    expect(page.get_by_role("status").filter(has_text=re.compile("reconnect|resum", re.I))).to_be_visible()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled(timeout=30_000)
    assert len(routes) >= 2, "the page opened a new socket"
    message = Message.objects.get(role="assistant", session__user=user)
    assert message.status == "completed" and message.content == LONG_REPLY
    assert len(before) < len(LONG_REPLY)
    expect(assistant(page).locator(".content")).to_have_text(LONG_REPLY)


def short_lived_access(page: Any, seconds: int) -> list[float]:
    """Every access token the console receives (sign-in, refresh) lives ``seconds``: the server's real
    token, re-signed with an earlier expiry, as a shorter ``JWT_ACCESS_MINUTES`` would give. Returns
    the list of times (``time.monotonic()``) each token was handed out."""
    issued: list[float] = []

    def shorten(route: Any) -> None:
        response = route.fetch()
        data = response.json() if response.ok else None
        if not data or "access" not in data:
            route.fulfill(response=response)
            return
        token = AccessToken(data["access"])
        token.set_exp(lifetime=timedelta(seconds=seconds))
        issued.append(time.monotonic())
        route.fulfill(response=response, json={**data, "access": str(token)})

    page.route(re.compile(r"/console/auth/(login|verify-code|refresh)$"), shorten)
    return issued


def test_an_access_token_that_expires_mid_answer_is_renewed_without_losing_text(console: Console, user: User) -> None:
    """The server ends a socket when the access token it opened with expires; before that the console
    opens a new one with a fresh token and resumes the answer it was streaming."""
    upload_ready_document(console, user)
    console.server.fake.reply = LONG_REPLY
    console.server.fake.token_delay = 0.3  # ~25 s an answer: the 35 s token is renewed mid-answer
    page = console.new_page()
    issued = short_lived_access(page, 35)
    sockets: list[tuple[float, str]] = []
    page.on("websocket", lambda ws: sockets.append((time.monotonic(), ws.url)))
    sign_in(page, user)
    page.goto("/console/chat")
    expect(page.get_by_label("Question")).to_be_focused()
    del sockets[:-1]  # the chat page's socket (the documents page had its own)
    ask(page)
    page.wait_for_function(STREAMING_TEXT)
    expect(page.get_by_role("button", name="Stop")).to_be_disabled(timeout=60_000)
    message = Message.objects.get(role="assistant", session__user=user)
    assert message.status == "completed" and message.content == LONG_REPLY
    expect(assistant(page).locator(".content")).to_have_text(LONG_REPLY)  # nothing lost, nothing twice
    # renewed before the server would close it: the second socket opened while the first token lived
    assert len({url for _, url in sockets}) >= 2, sockets
    assert sockets[0][1] != sockets[1][1] and sockets[1][0] - issued[0] < 30, (issued, sockets)


def test_persian_and_arabic_render_right_to_left(console: Console, user: User) -> None:
    document = upload_ready_document(console, user)
    console.server.fake.reply = "نام گربه مارمالاد است [1]."
    page = console.new_page()
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    sign_in(page, user)
    page.goto("/console/chat")
    page.get_by_text("Choose documents").click()  # ask within chosen documents
    page.get_by_role("checkbox", name="Committee minutes").check()
    question = "گربه نگهبان فانوس دریایی چه نام دارد؟"
    ask(page, question)
    expect(assistant(page).locator(".content")).to_have_text("نام گربه مارمالاد است [1].")
    direction = "el => getComputedStyle(el).direction"
    assert page.locator("#log article.msg.user .content").last.evaluate(direction) == "rtl"
    assert assistant(page).locator(".content").evaluate(direction) == "rtl"
    [frame] = [json.loads(f) for f in sent if '"chat.message"' in f]
    assert frame["document_ids"] == [str(document.pk)] and frame["content"] == question
    page.get_by_label("Question").fill("ما اسم القطة؟")
    assert page.get_by_label("Question").evaluate(direction) == "rtl"


# --- admins -----------------------------------------------------------------------------------


def test_a_member_is_refused_admin_pages_by_the_server(console: Console, user: User) -> None:
    console.allow_error(r"status of 403")
    page = console.new_page()
    sign_in(page, user)
    assert page.get_by_role("navigation", name="Console").get_by_role("link").all_inner_texts() == [
        "Documents",
        "Chat",
        "Usage",
    ]
    for path in ("/console/people", "/console/settings"):
        response = page.goto(path)
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    screenshot(page, "not-allowed")


def test_admins_manage_people_and_settings(console: Console, admin_user: User, user: User) -> None:
    page = console.new_page()
    sign_in(page, admin_user)
    page.get_by_role("link", name="People").click()
    expect(page.locator("#people[data-loaded]")).to_be_visible()
    page.get_by_label("Email", exact=True).fill("newcomer@acme.test")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("status").filter(has_text="Invited newcomer@acme.test")).to_be_visible()
    [mail] = [m for m in console.server.mails() if "newcomer@acme.test" in m]
    assert "/console/?workspace=acme&email=newcomer%40acme.test" in mail
    page.get_by_label(f"Role of {user.email}").select_option("viewer")
    expect(page.get_by_role("status").filter(has_text=f"{user.email} is now viewer")).to_be_visible()
    assert User.objects.get(pk=user.pk).role == "viewer"
    page.get_by_role("button", name=f"Deactivate {user.email}").click()
    expect(page.get_by_role("button", name=f"Reactivate {user.email}")).to_be_visible()
    assert not User.objects.get(pk=user.pk).is_active
    screenshot(page, "people")

    page.get_by_role("link", name="Settings").click()
    expect(page.locator("#settings[data-loaded]")).to_be_visible()
    page.get_by_label("System prompt").fill("Answer briefly.")
    page.get_by_label("Daily token quota (per person)").fill("5000")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_text("Settings saved.")).to_be_visible()
    admin_user.tenant.refresh_from_db()
    assert admin_user.tenant.settings["system_prompt"] == "Answer briefly."
    assert admin_user.tenant.settings["user_daily_token_quota"] == 5000
    screenshot(page, "settings", full_page=True)


def test_phone_width_has_no_sideways_scrolling(chromium: Any, console: Console, user: User) -> None:
    phone = chromium.new_context(base_url=console.base, viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = phone.new_page()
        console.watch(page)
        sign_in(page, user)
        for path in ("/console/usage", "/console/documents", "/console/chat"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), path
        screenshot(page, "chat-phone")
    finally:
        phone.close()
