"""Database work of the chat socket path: a small pool of threads that keep their connections.

Channels closes the shared sync thread's database connection before every frame a consumer handles
(``close_old_connections`` with ``CONN_MAX_AGE=0``, the right setting under ASGI), so each question
would open a new PostgreSQL connection: about 10 ms before anything else happens. The chat's own
threads (``CHAT_DB_THREADS``, 2 by default; 0 runs on the shared thread instead) keep one connection
each, replaced after a database error; the pool is bounded, so are the connections.

REST views do not come here: they run in their request's thread, as Django expects.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=settings.CHAT_DB_THREADS, thread_name_prefix="chat-db")
        return _executor


def _call(fn: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        return fn(**kwargs)
    except (OperationalError, InterfaceError):
        connection.close()  # a broken connection is replaced on the next call
        raise


async def run(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` on a chat database thread (context variables such as the request id included)."""
    if settings.CHAT_DB_THREADS <= 0:
        return await sync_to_async(fn)(**kwargs)
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(context.run, _call, fn, kwargs))


async def run_here(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """``fn(**kwargs)`` where Django would run it (the request's thread under a sync view)."""
    return await sync_to_async(fn)(**kwargs)


def shutdown() -> None:
    """Stop the threads; their connections close with them (tests, before dropping the database)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
