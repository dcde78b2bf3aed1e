"""The embedded default end to end, as `make run` gives it, through real processes on loopback.

The test session's embedded PostgreSQL, the filesystem broker, the PostgreSQL channel layer and the
database cache; no Redis anywhere. A daphne and a prefork Celery worker run as separate OS
processes; the test signs in with an e-mailed code over HTTP, uploads a PDF, follows its
``document.status`` events on the chat socket (worker → PostgreSQL channel layer → daphne → socket),
searches, asks and receives a streamed cited answer, cancels one answer (and another through a
second daphne: the PostgreSQL channel layer carries the cancel) and resumes another.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import flow
from tests.e2e.client import Api, Socket
from tests.fake_openai import FakeOpenAI
from tests.stack import Stack, start_stack
from tests.subprocesses import build_subprocess_env

# django_db: so that the session sets up its test database (the servers use it; the test process does not).
pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.timeout(300)]

TENANT, EMAIL = "embedded-e2e", "alice@embedded-e2e.test"


@pytest.fixture(scope="module")
def stack(
    django_db_setup: Any,
    django_db_blocker: Any,
    fake_openai_server: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, Path]]:
    folder = tmp_path_factory.mktemp("embedded-stack")
    mail_dir = folder / "mail"
    with django_db_blocker.unblock():
        env = build_subprocess_env(**flow.stack_env_overrides(fake_openai_server, mail_dir))
    for name in ("REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    flow.create_tenant(env, TENANT, EMAIL)
    with django_db_blocker.unblock():  # the workers' readiness ping is answered in the database cache
        started = start_stack(folder, env, webs=1, workers=1)
    try:
        yield started, mail_dir
    finally:
        started.close()
        # The rows the servers committed: leave the database empty for the tests after this module.
        from django.core.management import call_command

        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def walk(stack: tuple[Stack, Path]) -> Iterator[flow.Walk]:
    running, mail_dir = stack
    api = Api(running.webs[0].base, TENANT)
    api.sign_in_with_code(EMAIL, mail_dir)
    yield flow.Walk(api=api)
    api.close()


@pytest.fixture
def fake(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


def socket_for(stack: Stack, walk: flow.Walk) -> Socket:
    return Socket(stack.webs[0].ws_base, walk.api.token or "")


def test_the_stack_runs_the_embedded_default(stack: tuple[Stack, Path], walk: flow.Walk) -> None:
    ready = walk.api.get("/api/v1/health/ready")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["cache"]["backend"] == "AtomicDatabaseCache"
    assert checks["channel_layer"]["backend"] == "PostgresChannelLayer"
    assert "filesystem" in checks["broker"]["transport"].lower()


def test_upload_status_search_and_a_cited_streamed_answer(
    stack: tuple[Stack, Path], walk: flow.Walk, fake: FakeOpenAI
) -> None:
    running, _ = stack
    with socket_for(running, walk) as socket:
        walk.document_id, walk.statuses = flow.upload_and_follow(walk.api, socket)
        flow.check_statuses(walk.statuses)
        flow.check_search(walk.api, walk.document_id)
        flow.ask(socket, fake, walk.document_id)


def test_cancel_an_answer(stack: tuple[Stack, Path], walk: flow.Walk, fake: FakeOpenAI) -> None:
    running, _ = stack
    assert walk.document_id, "needs the document of the test before"
    with socket_for(running, walk) as socket:
        flow.cancel_one(walk.api, socket, fake)


def test_cancel_through_another_web_process(stack: tuple[Stack, Path], walk: flow.Walk, fake: FakeOpenAI) -> None:
    """A second daphne on the same database: an answer generating on the first is cancelled by a request
    to the second, through the PostgreSQL channel layer."""
    running, _ = stack
    assert walk.document_id, "needs the document of the test before"
    other = running.add_web("webB")
    api_b = Api(other.base, TENANT, token=walk.api.token)
    try:
        with socket_for(running, walk) as socket:
            flow.cancel_through(api_b, socket, fake)
    finally:
        api_b.close()


def test_resume_an_answer_after_the_socket_dropped(
    stack: tuple[Stack, Path], walk: flow.Walk, fake: FakeOpenAI
) -> None:
    running, _ = stack
    assert walk.document_id, "needs the document of the test before"
    flow.resume_one(walk.api, socket_for(running, walk), lambda: socket_for(running, walk), fake)
