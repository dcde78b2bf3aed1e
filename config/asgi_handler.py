"""Django's ASGI handler, with the middleware chain and the view on one worker thread per request.

Why: Django's ``ASGIHandler`` builds the middleware chain in async mode. Every sync piece then costs a
thread hop (asgiref ``sync_to_async``, ~100 us each on these machines, more under load): the sync
middlewares below ServeStatic (which is async-only), an ``async_to_sync`` back to the loop for the
async-capable ones under them, each ``process_view`` (CSRF), the view (DRF has no async views), and
``response.render()``. Django's own ``MiddlewareMixin`` middlewares (sessions, CSRF, auth, messages,
django-prometheus) have no async code: in async mode each of their ``process_request`` and
``process_response`` becomes a hop of its own, so "make the chain async" only moves the hops. And
each request's ``ThreadSensitiveContext`` starts a new thread, and another to join it at the end.
``benchmarks/api_profile.py`` counted 8 ``sync_to_async`` + 1 ``async_to_sync`` hops and 2 new
threads per API request.

What this handler changes, and nothing else:

* the chain is built as for WSGI (``load_middleware(is_async=False)``): the view, ``process_view``
  and rendering are called directly, the sync-capable middlewares run in sync mode. Async-only
  middleware at the top (ServeStatic, and the async-capable ones above it) stays on the event loop,
  so static files are still served without a hop; the rest of the chain is entered with one
  thread-sensitive ``sync_to_async`` (Django adapts it so). An async view still works (Django's
  sync path runs it with ``async_to_sync``); we have none.
* each request's thread-sensitive context runs on a single-thread executor taken from a free list
  and put back afterwards (asgiref's ``ThreadSensitiveContext(executor=...)``), so no thread is
  started per request. Everything a request keeps per "thread" (database connections, the active
  language and time zone) is asgiref ``Local`` storage, which is per context, not per thread.

* Django's ``request_started`` and ``request_finished`` (one hop each in Django's handler) are sent on
  that same thread, in the one hop: ``request_started`` as the request enters the sync part of the
  chain, and ``response.close()`` (``request_finished``: database connections back to the pool,
  uploaded files closed) as a complete (non-streaming) response leaves it, before the async top adds
  its headers and the bytes are sent. A streaming response is closed after sending, as Django does;
  so is any response that did not pass the sync part (static files), with one hop.

The rest is Django's: reading the body, the disconnect listener, sending. Per API request that
leaves 1 hop and no new thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import AsyncToSync, ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponseBase
from django.urls import set_script_prefix

# Idle request threads kept for reuse; beyond that a finished request's thread is let go.
MAX_IDLE_EXECUTORS = 32


class DocuMindASGIHandler(ASGIHandler):
    """``ASGIHandler`` with the sync middleware chain and the view on one reused thread per request."""

    def __init__(self) -> None:
        self._idle: list[ThreadPoolExecutor] = []
        self._idle_lock = threading.Lock()
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        """The chain as WSGI builds it, its async top (if any) left on the event loop, entered with one hop."""
        super().load_middleware(is_async=False)
        chain = self._middleware_chain
        if isinstance(chain, AsyncToSync):
            # Django wrapped the async top of the chain (ServeStatic and above) for a sync caller: unwrap it.
            self._middleware_chain = chain.awaitable
        elif not iscoroutinefunction(chain):
            self._middleware_chain = sync_to_async(self._on_request_thread(chain), thread_sensitive=True)

    def adapt_method_mode(
        self,
        is_async: bool,
        method: Any,
        method_is_async: bool | None = None,
        debug: bool = False,
        name: str | None = None,
    ) -> Any:
        """Django's, but the sync part of the chain (entered from the async top) also sends the request's
        signals on its thread (:meth:`_on_request_thread`)."""
        if method_is_async is None:
            method_is_async = iscoroutinefunction(method)
        if is_async and not method_is_async:
            method = self._on_request_thread(method)
        return super().adapt_method_mode(is_async, method, method_is_async, debug, name)

    def _on_request_thread(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> Any:
        """``get_response`` between ``request_started`` and, for a complete response, ``response.close()``."""
        handler_class = type(self)

        def sync_part(request: HttpRequest) -> HttpResponseBase:
            signals.request_started.send(sender=handler_class, scope=getattr(request, "scope", None))
            response = get_response(request)
            if not response.streaming:
                response._handler_class = handler_class  # type: ignore[attr-defined]  # request_finished's sender
                response._resource_closers.append(request.close)  # uploaded files, as Django's own close would
                response.close()
            return response

        return sync_part

    def _take_executor(self) -> ThreadPoolExecutor:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-request")

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._idle_lock:
            if len(self._idle) < MAX_IDLE_EXECUTORS:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)  # its thread ends once any work still queued on it is done

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Django's ``ASGIHandler.handle``, with ``request_started`` and (for complete responses)
        ``response.close()`` left to the request's thread (:meth:`_on_request_thread`)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            await sync_to_async(error_response.close)()
            return

        async def process_request(request: HttpRequest, send: Any) -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):  # the client left while it was sent
                await self.send_response(response, send)
            return response

        # As Django: stop the request when the client disconnects first.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request(request, send)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            await signals.request_finished.asend(sender=self.__class__)
        else:
            if not response.closed:  # streamed, or never on the request's thread (a static file)
                await sync_to_async(response.close)()
        body_file.close()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._take_executor()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self._give_back(executor)


def get_asgi_application() -> DocuMindASGIHandler:
    """``django.core.asgi.get_asgi_application`` with :class:`DocuMindASGIHandler`."""
    django.setup(set_prefix=False)
    return DocuMindASGIHandler()
