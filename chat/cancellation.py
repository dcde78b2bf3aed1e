"""Cancelling an answer wherever it generates: every web process listens for cancels on the channel layer.

An answer generates on the event loop of the web process that received its question
(:mod:`chat.generation`), but its cancel can arrive at any web process behind the proxy: a REST
``POST .../cancel``, a session deletion, or a socket's ``chat.cancel`` after a reconnect to another
process. Each event loop that generates answers has a listener: a channel of its own in the group
:data:`GROUP`. A cancel that finds no generation in the process that received it is a ``group_send``
of ``{"type": "chat.cancel", "message_id"}`` to that group (:func:`send_cancel`); each listener hands
the id to :func:`chat.generation.cancel`, which stops the answer where it generates (saved
``cancelled`` with the text said so far, as any local cancel) and ignores it everywhere else. A cancel
that reaches the process generating the answer takes that local path directly, without the layer.

The layer is the project's own (``CHANNEL_LAYERS``): PostgreSQL (``LISTEN``/``NOTIFY``) in the
embedded default, Redis in the distributed mode.

* Answers cost the layer nothing: the listener joins once per event loop (before the loop's first
  answer publishes its id: :func:`listen` is awaited before ``chat.start``), and again when its
  membership is older than ``REJOIN_SECONDS`` (channels_redis forgets members after its
  ``group_expiry``, a day). It receives on a process-specific channel (``new_channel()``, the
  consumers' prefix: see :mod:`config.channel_layers`), its receive started before it joins (the
  PostgreSQL layer drops a message for a channel nobody receives on yet). It lives as long as its loop;
  a short-lived loop (``asyncio.run``, a test's) cancels it when it closes.
* A cancel reaches every web process (a handful); a process that stopped leaves its channel in the
  group, as a socket's stays in its user's group, and what is sent there expires unread (60 s).
* :func:`listen` waits at most ``JOIN_TIMEOUT_SECONDS``, and after a failed join not at all for
  ``JOIN_RETRY_SECONDS``: a layer that is down does not hold up answers (their cancels then reach only
  their own process; logged as ``chat_cancel_join_failed``).
* A ``group_send`` is fire and forget: nobody answers it. The sender has checked the row is still
  ``streaming``; if the answer ends first, the cancel finds nothing to stop and it ends as it did.
  An answer whose process died is generated nowhere: the REST cancel then marks it ``interrupted``
  once its row is ``CHAT_STALE_STREAM_SECONDS`` old, as a resume does (:mod:`chat.views`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

GROUP = "chat.cancels"
CANCEL = "chat.cancel"
JOIN_TIMEOUT_SECONDS = 2.0
REJOIN_SECONDS = 3600.0
RECEIVE_RETRY_SECONDS = 1.0
JOIN_RETRY_SECONDS = 30.0


class _Listener:
    """One event loop's receiver of cancels, handing each message id to ``on_cancel``."""

    def __init__(self, layer: Any, on_cancel: Callable[[str], bool]) -> None:
        self.layer = layer
        self.on_cancel = on_cancel
        self.channel: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.joined_at: float | None = None  # time.monotonic() of the last group_add
        self.retry_after = 0.0  # after a failed join, answers do not wait for another before this
        self.lock = asyncio.Lock()

    def fresh(self) -> bool:
        return (
            self.joined_at is not None
            and time.monotonic() - self.joined_at < REJOIN_SECONDS
            and self.task is not None
            and not self.task.done()
        )

    async def join(self) -> None:
        async with self.lock:
            if self.fresh():
                return
            if self.channel is None:
                self.channel = await self.layer.new_channel()
            if self.task is None or self.task.done():
                self.task = asyncio.get_running_loop().create_task(self._receive(), name="chat-cancel-listener")
                await asyncio.sleep(0)  # its receive() has started: the channel is held before the group has it
            await self.layer.group_add(GROUP, self.channel)
            self.joined_at = time.monotonic()

    async def _receive(self) -> None:
        assert self.channel is not None
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception:  # the layer is down: cancels wait for it to come back
                logger.warning("chat_cancel_receive_failed", exc_info=True)
                await asyncio.sleep(RECEIVE_RETRY_SECONDS)
                continue
            message_id = message.get("message_id")
            if message.get("type") == CANCEL and message_id and self.on_cancel(str(message_id)):
                logger.info("chat_cancel_received", extra={"message_id": str(message_id)})


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Listener] = weakref.WeakKeyDictionary()


async def listen(on_cancel: Callable[[str], bool]) -> None:
    """Return once cancels sent from any process reach this event loop: ``on_cancel(message_id)`` is called
    for each (it stops the answer if it generates here; whether it did). Immediate once joined; never
    raises (gives up after ``JOIN_TIMEOUT_SECONDS``, logged)."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        loop = asyncio.get_running_loop()
        listener = _listeners.get(loop)
        if listener is None or listener.layer is not layer:  # a new layer (tests override CHANNEL_LAYERS)
            listener = _listeners[loop] = _Listener(layer, on_cancel)
        if not listener.fresh() and time.monotonic() >= listener.retry_after:
            try:
                async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):
                    await listener.join()
            except Exception:
                listener.retry_after = time.monotonic() + JOIN_RETRY_SECONDS
                raise
    except Exception:
        logger.warning("chat_cancel_join_failed", exc_info=True)


async def send_cancel(message_ids: Iterable[Any], *, layer: Any = None) -> None:
    """Ask whichever process generates each answer to cancel it (a ``group_send`` to every listener, on
    ``layer``, the default one unless given; nobody answers). Raises the layer's error when it cannot send."""
    layer = layer or get_channel_layer()
    if layer is None:
        return
    for message_id in message_ids:
        await layer.group_send(GROUP, {"type": CANCEL, "message_id": str(message_id)})
