"""The ASGI handler (config.asgi_handler): the sync chain and the view on one reused thread per request.

Driven through the ASGI application itself (the test client would take Django's WSGI-style path).
Thread hops are counted by wrapping asgiref's own adapters; the assertions are about what a request
costs and which thread runs it, and that nothing the middleware adds is lost on the way.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import AsyncToSync, SyncToAsync
from channels.testing import HttpCommunicator
from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

from config.asgi_handler import DocuMindASGIHandler

STATIC_FILE = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css"


@pytest.fixture
def handler() -> DocuMindASGIHandler:
    return DocuMindASGIHandler()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of thread hops (both directions) and threads started from now on."""
    counts = {"sync_to_async": 0, "async_to_sync": 0, "threads": 0}
    to_async, to_sync, start = SyncToAsync.__call__, AsyncToSync.__call__, threading.Thread.start

    async def counted_to_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["sync_to_async"] += 1
        return await to_async(self, *args, **kwargs)

    def counted_to_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["async_to_sync"] += 1
        return to_sync(self, *args, **kwargs)

    def counted_start(self: threading.Thread) -> None:
        counts["threads"] += 1
        start(self)

    monkeypatch.setattr(SyncToAsync, "__call__", counted_to_async)
    monkeypatch.setattr(AsyncToSync, "__call__", counted_to_sync)
    monkeypatch.setattr(threading.Thread, "start", counted_start)
    return counts


async def _get(app: Any, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """One GET through ``app`` until the handler returns (after ``request_finished``)."""
    communicator = HttpCommunicator(app, "GET", path, headers=[(b"host", b"testserver"), *(headers or [])])
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=10)
    body = b""
    while True:  # ServeStatic ends a file with a message that has no "body" (allowed by the ASGI spec)
        chunk = await communicator.receive_output(timeout=10)
        body += chunk.get("body", b"")
        if not chunk.get("more_body", False):
            break
    await communicator.wait(timeout=10)
    headers_out = {name.decode().lower(): value.decode() for name, value in start.get("headers", [])}
    return {"status": start["status"], "headers": headers_out, "body": body}


async def test_an_api_request_makes_one_hop_and_starts_no_thread(
    handler: DocuMindASGIHandler, hops: dict[str, int]
) -> None:
    await _get(handler, "/api/v1/health/live")  # the first request starts the request thread
    hops.update(sync_to_async=0, async_to_sync=0, threads=0)

    response = await _get(handler, "/api/v1/health/live", [(b"x-request-id", b"hops-0001")])

    assert response["status"] == 200
    # request_started, the middleware chain with the view and rendering, request_finished: one hop
    assert hops == {"sync_to_async": 1, "async_to_sync": 0, "threads": 0}
    headers = response["headers"]
    assert headers["x-request-id"] == "hops-0001"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in headers["content-security-policy"]


async def test_static_files_stay_on_the_event_loop_with_their_headers(
    handler: DocuMindASGIHandler, hops: dict[str, int]
) -> None:
    await _get(handler, STATIC_FILE)
    hops.update(sync_to_async=0, async_to_sync=0, threads=0)

    response = await _get(handler, STATIC_FILE, [(b"x-request-id", b"static-0001")])

    assert response["status"] == 200
    assert hops["sync_to_async"] <= 2  # only Django's request_started and request_finished
    assert response["headers"]["x-request-id"] == "static-0001"
    assert response["headers"]["x-content-type-options"] == "nosniff"


async def test_one_request_after_another_reuses_a_thread_and_concurrent_ones_get_their_own(
    handler: DocuMindASGIHandler,
) -> None:
    threads: dict[str, int] = {}
    second_started = threading.Event()
    first_saw_second: list[bool] = []

    def receiver(sender: Any, scope: dict[str, Any] | None = None, **kwargs: Any) -> None:
        path = (scope or {}).get("path", "")
        threads[path] = threading.get_ident()
        if path == "/api/v1/health/first":
            # Blocks this request's thread until the other request has started: they would deadlock
            # (and this would wait out its timeout) if both requests had been given one thread.
            first_saw_second.append(second_started.wait(timeout=5))
        elif path == "/api/v1/health/second":
            second_started.set()

    request_started.connect(receiver, weak=False)
    try:
        await _get(handler, "/api/v1/health/one")
        await _get(handler, "/api/v1/health/two")
        assert threads["/api/v1/health/one"] == threads["/api/v1/health/two"]

        first = asyncio.ensure_future(_get(handler, "/api/v1/health/first"))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, _get(handler, "/api/v1/health/second"))
    finally:
        request_started.disconnect(receiver)

    assert first_saw_second == [True]
    assert threads["/api/v1/health/first"] != threads["/api/v1/health/second"]
    assert threading.get_ident() not in threads.values()  # never on the event loop's thread


def _streamed(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> Any:
        yield b"part one, "
        yield b"part two"

    return StreamingHttpResponse(parts())


urlpatterns = [path("streamed", _streamed), path("complete", lambda request: HttpResponse(b"whole"))]


async def _events_of(handler: DocuMindASGIHandler, path: str) -> list[tuple[str, int]]:
    """What happened, in order, on which thread: the request's signals and the ASGI messages sent."""
    events: list[tuple[str, int]] = []

    def started(**kwargs: Any) -> None:
        events.append(("request_started", threading.get_ident()))

    def finished(**kwargs: Any) -> None:
        events.append(("request_finished", threading.get_ident()))

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [(b"host", b"testserver")]}
    received: list[dict[str, Any]] = [{"type": "http.request", "body": b""}]
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if received:
            return received.pop()
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        events.append((message["type"], threading.get_ident()))

    request_started.connect(started, weak=False)
    request_finished.connect(finished, weak=False)
    try:
        await handler(scope, receive, send)
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    return events


async def test_the_request_signals_are_sent_on_the_request_thread_before_a_complete_response_goes_out(
    handler: DocuMindASGIHandler, settings: Any
) -> None:
    loop = threading.get_ident()
    for url in ("/api/v1/health/live", "/complete"):
        if url == "/complete":
            settings.ROOT_URLCONF = __name__
        events = await _events_of(handler, url)
        names = [name for name, _ in events]
        assert names == ["request_started", "request_finished", "http.response.start", "http.response.body"], url
        threads = {name: ident for name, ident in events}
        assert threads["request_started"] == threads["request_finished"] != loop  # connections go back in the hop
        assert threads["http.response.start"] == loop


async def test_a_streaming_response_is_closed_after_it_is_sent(handler: DocuMindASGIHandler, settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    events = await _events_of(handler, "/streamed")
    names = [name for name, _ in events]
    assert names[0] == "request_started" and names[1] == "http.response.start"
    assert names[-1] == "request_finished" and names.count("request_finished") == 1  # after the last body message
    assert names.count("http.response.body") >= 2


def test_the_served_application_leaves_its_start_up_heap_out_of_the_garbage_collector(
    subprocess_env: dict[str, str],
) -> None:
    """``config.asgi`` freezes what exists once it is loaded, so the collector's full collections (which stop
    the event loop) walk only what the requests made since, not Django and its libraries."""
    import subprocess
    import sys

    from tests.subprocesses import BASE_DIR

    script = (
        "import gc\n"
        "before = gc.get_freeze_count()\n"
        "import config.asgi\n"
        "import django.urls, rest_framework.views\n"
        "tracked = set(map(id, gc.get_objects()))\n"
        "print(before, gc.get_freeze_count(), id(config.asgi.application.application_mapping) in tracked)\n"
    )
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE="config.settings.local")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, frozen, still_collected = done.stdout.split()[-3:]
    assert before == "0" and int(frozen) > 50_000  # Django, DRF, Channels and the apps, at the least
    assert still_collected == "False"  # the router's own mapping is among the frozen objects
