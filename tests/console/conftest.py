"""Browser tests of the console: Playwright (pip) driving Debian's chromium against a real daphne and worker.

``console_server`` (per module) starts ``daphne`` and a Celery worker on the session's test database
(the embedded stand-ins: PostgreSQL channel layer, filesystem broker), with the fake OpenAI server
for answers and the offline hashing embedder; e-mails go to files. ``console`` (per test) is a
fresh browser context that records every request and every JavaScript error; at the end of the test
it fails on a request to another host or an error nobody expected.

Without chromium (or Playwright) the tests skip with the reason, except under ``CI=true``, where a
missing browser fails the run.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fake_openai import FakeOpenAI
from tests.services import chromium_binary, require_service
from tests.subprocesses import build_subprocess_env, daphne_server, launch_celery_worker, stop_process_group

CHROMIUM = chromium_binary() or "/usr/bin/chromium"  # CHROMIUM_PATH, else Debian's chromium on PATH
# Debian's chromium in a closed network: no background fetches, no sandbox (containers), no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MAX_UPLOAD_MB = 1


def require_browser() -> None:
    """The ``chromium`` service (tests/services.py): skipped with the reason locally, failing under CI."""
    require_service("chromium")


@dataclass
class ConsoleServer:
    base: str
    mail_dir: Path
    fake: FakeOpenAI
    log: Path

    def mails(self) -> list[str]:
        files = sorted(self.mail_dir.glob("*.log"), key=lambda p: p.stat().st_mtime) if self.mail_dir.exists() else []
        return [p.read_text(errors="replace") for p in files]


@pytest.fixture(scope="module")
def console_server(
    django_db_setup: Any, django_db_blocker: Any, fake_openai_server: FakeOpenAI, tmp_path_factory: Any
) -> Iterator[ConsoleServer]:
    require_browser()
    tmp = tmp_path_factory.mktemp("console")
    mail_dir = tmp / "mail"
    mail_dir.mkdir()
    with django_db_blocker.unblock():
        env = build_subprocess_env(
            **fake_openai_server.process_env(),
            CHAT_PROVIDER="openai",
            EMBEDDING_PROVIDER="hashing",
            CHUNK_TOKENS="60",
            CHUNK_OVERLAP="6",
            RATELIMIT_ENABLED="false",
            LOG_LEVEL="WARNING",
            MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
            CHAT_SAVE_INTERVAL_MS="50",
            DOCUMIND_TEST_EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
            DOCUMIND_TEST_EMAIL_DIR=str(mail_dir),
            AUTH_EMAIL_IN_BACKGROUND="false",
        )
        worker = launch_celery_worker(tmp, env=env)
    try:
        with daphne_server(env, tmp / "daphne.log") as base:
            yield ConsoleServer(base=base, mail_dir=mail_dir, fake=fake_openai_server, log=tmp / "daphne.log")
    finally:
        stop_process_group(worker.process)


@pytest.fixture(scope="module")
def chromium(console_server: ConsoleServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still
    # synchronous, so Django's async-safety check would refuse them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Console:
    """One browser context on the console, with what it requested and what went wrong in it."""

    server: ConsoleServer
    context: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # responses >= 400, to explain "Failed to load resource"
    allowed: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.server.base

    def watch(self, page: Any) -> Any:
        page.on("request", lambda request: self.requests.append(request.url))
        page.on(
            "response",
            lambda response: (
                self.failed.append(f"{response.status} {response.url}") if response.status >= 400 else None
            ),
        )
        page.on("websocket", lambda ws: self.requests.append(ws.url))
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None,
        )
        return page

    def new_page(self) -> Any:
        return self.context.new_page()  # the context's "page" event attaches the watchers

    def allow_error(self, pattern: str) -> None:
        """An error the test provokes on purpose (e.g. the 415 of a non-PDF upload)."""
        self.allowed.append(pattern)

    def foreign_requests(self) -> list[str]:
        own = urlsplit(self.base).netloc
        return [
            url
            for url in self.requests
            # the browser's own pages (its PDF viewer is an extension) are not another host
            if urlsplit(url).scheme not in ("data", "blob", "about", "chrome", "chrome-extension")
            and urlsplit(url).netloc != own
        ]

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]


@pytest.fixture
def console(chromium: Any, console_server: ConsoleServer, transactional_db: Any) -> Iterator[Console]:
    console_server.fake.reset()
    context = chromium.new_context(base_url=console_server.base, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(20_000)
    watched = Console(server=console_server, context=context)
    context.on("page", watched.watch)
    yield watched
    context.close()
    console_server.fake.reset()
    assert not watched.foreign_requests(), watched.foreign_requests()
    if any(f.startswith("5") for f in watched.failed):  # the server's side of a 500, shown with the failure
        sys.stderr.write("daphne output:\n" + console_server.log.read_text(errors="replace")[-12000:])
    assert not watched.unexpected_errors(), (watched.unexpected_errors(), watched.failed)


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    """A screenshot of the page: into docs/screenshots/ (the README shows them) with
    ``DOCUMIND_SCREENSHOTS=1``, else into a temporary folder, so a test run leaves the tree clean."""
    folder = (
        SCREENSHOTS
        if os.environ.get("DOCUMIND_SCREENSHOTS") == "1"
        else Path(tempfile.gettempdir()) / "documind-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)
