"""Database work of the chat socket path: a small pool of threads that keep their connections, questions first.

Channels closes the shared sync thread's database connection before every frame a consumer handles
(``close_old_connections`` with ``CONN_MAX_AGE=0``, the right setting under ASGI), so each question
would open a new PostgreSQL connection: about 10 ms before anything else happens. The chat's own
threads (``CHAT_DB_THREADS``, 2 by default; 0 runs on the shared thread instead) keep one connection
each, replaced after a database error; the pool is bounded, so are the connections.

Work is taken in order of urgency, then of arrival: :func:`run` is for what someone waits on (a
frame's check, a question's preparation: its time to first token), :func:`run_deferred` for what may
wait behind it (saving streamed progress and finished answers). Under a burst of questions the saves
of answers already streaming do not delay the next question's first token.

REST views do not come here: they run in their request's thread, as Django expects.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

URGENT, DEFERRED = 0, 1

_lock = threading.Lock()
_pool: _Pool | None = None


class _Pool:
    """``size`` threads taking ``(priority, arrival)``-ordered work from one queue."""

    def __init__(self, size: int) -> None:
        self.queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future[Any] | None]] = (
            queue.PriorityQueue()
        )
        self.arrivals = itertools.count()
        self.threads = [
            threading.Thread(target=self._work, name=f"chat-db_{i}", daemon=True) for i in range(max(1, size))
        ]
        for thread in self.threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self.queue.put((priority, next(self.arrivals), fn, future))
        return future

    def _work(self) -> None:
        try:
            while True:
                _, _, fn, future = self.queue.get()
                if fn is None or future is None:
                    return
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            connection.close()

    def shutdown(self) -> None:
        for _ in self.threads:
            self.queue.put((DEFERRED + 1, next(self.arrivals), None, None))  # after the work already queued
        for thread in self.threads:
            thread.join()


def _get_pool() -> _Pool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool(settings.CHAT_DB_THREADS)
        return _pool


def _call(fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        return fn(**kwargs)
    except (OperationalError, InterfaceError):
        connection.close()  # a broken connection is replaced on the next call
        raise


async def _run(priority: int, fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    if settings.CHAT_DB_THREADS <= 0:
        return await sync_to_async(fn)(**kwargs)
    context = contextvars.copy_context()  # the request id and other context variables go along
    future = _get_pool().submit(priority, functools.partial(context.run, _call, fn, kwargs))
    return await asyncio.wrap_future(future)


async def run(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` on a chat database thread, before any deferred work that waits."""
    return await _run(URGENT, fn, kwargs)


async def run_deferred(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` on a chat database thread once no urgent work waits (saves of streamed answers)."""
    return await _run(DEFERRED, fn, kwargs)


async def run_here(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` where Django would run it (the request's thread under a sync view)."""
    return await sync_to_async(fn)(**kwargs)


def shutdown() -> None:
    """Stop the threads after the work already queued; their connections close with them (tests, before
    dropping the database)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown()
