"""The PostgreSQL channel layer of the embedded default (``channels_postgres``), with fixes.

``channels_postgres`` runs every query through its own autocommit psycopg pool, except
``group_discard``, which goes through the Django ORM on a database alias named
``channels_postgres`` that this project does not define (and whose transaction would not be the
layer's anyway). :class:`PostgresChannelLayer` routes that one through the pool too.

How the layer delivers, which the fixes below depend on: every message is a row whose insert
NOTIFYs one ``LISTEN`` connection per process; that listener queues the notification for a
channel only when this process holds the channel's advisory lock, taken by the first
``receive()`` on it. A message sent to a channel before its lock is held is dropped by the
listener (it stays in the table until it expires). And when the ``LISTEN`` connection dies, the
library keeps its "listening" flag set, so nothing would ever listen again in that process: here the
listener reconnects, and catches up on the messages of its channels sent meanwhile.

:func:`probe_layer` is the readiness round trip on any layer. On the Redis layer of the distributed
mode (``channels_redis``) it must use a channel made by ``new_channel()`` with its default prefix,
the call every consumer makes: that library receives all the process-specific channels of a process
through one loop guarded by one lock, and whoever holds the lock pops only the Redis key of *its own*
channel's prefix (``asgispecific.<client prefix>!``), blocking on it (``BZPOPMIN``, 5 s at a time, again
and again) until a message arrives there, then hands each message to the buffer of the channel it names.
A probe on another prefix (``health.``, as it was) sent to another key, which only the probe itself
would pop once it held the lock: while a single socket was open and idle, its receive held the lock
for good, and every probe timed out (0/3 readiness answers under the chat benchmark; 3/3 timeouts with
one idle receiver). On the consumers' prefix, the probe travels the path socket events take, and
waits as they do: the library pops a process's messages oldest first, one at a time (a few Redis
round trips and loop turns each), so when events arrive faster than this process delivers them for
longer than the check's timeout, socket events are that late too and readiness says so (503).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
import weakref
from collections import OrderedDict
from typing import Any

import psycopg
from channels_postgres import core
from channels_postgres.db import GROUP_CHANNEL_TABLE, MESSAGE_TABLE, DatabaseLayer
from psycopg import sql

logger = logging.getLogger(__name__)

LISTEN_RETRY_SECONDS = 1.0
LISTENER_APPLICATION_NAME = "documind-channel-listener"  # how the LISTEN connection shows in pg_stat_activity
_SEEN_IDS = 50_000  # more than a busy process queues within the layer's 60 s message expiry


class _DatabaseLayer(DatabaseLayer):
    async def delete_channel_group(self, group_key: str, channel: str) -> None:
        """Remove ``channel`` from ``group_key`` on the layer's own connection pool."""
        query = sql.SQL("DELETE FROM {table} WHERE group_key = %s AND channel = %s").format(
            table=sql.Identifier(GROUP_CHANNEL_TABLE)
        )
        pool = await self.get_db_pool(db_params=self.db_params)
        async with pool.connection() as conn:
            await conn.execute(query, (group_key, channel))


class PostgresChannelLayer(core.PostgresChannelLayer):
    """``channels_postgres.core.PostgresChannelLayer`` whose ``group_discard`` needs no extra DB alias,
    whose listener restarts after its connection dies, and with a round-trip probe for readiness."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.django_db = _DatabaseLayer(kwargs.get("PSYCOPG_OPTIONS", {}), self.db_params, logger=self.django_db.logger)
        self._listening_loop: asyncio.AbstractEventLoop | None = None
        self._seen: OrderedDict[int, None] = OrderedDict()
        # One probe channel (and its advisory lock, which is held for the session) per event loop,
        # not one per readiness call: every channel's lock would stay held and fill the lock table.
        self._probes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

    def _get_or_create_listener_task(self) -> tuple[asyncio.Event, bool]:
        """The library's, with its "listening" event kept per event loop.

        The library sets ``event_loop`` once: in a second loop (``async_to_sync`` outside a server, one
        loop per test) the stale event of the first says "listening" before this loop's listener is.
        """
        loop = asyncio.get_running_loop()
        if self.event_loop is not loop:
            self.event_loop = loop
            self.listener_task_is_running = asyncio.Event()
        return super()._get_or_create_listener_task()

    async def listen_to_all_channels(self) -> None:
        """One LISTEN loop per event loop, which reconnects when its connection dies.

        ``receive()`` starts a listener whenever the "listening" event is not set yet, so every consumer
        that starts receiving while the first listener is still connecting would start another one, and
        from then on each message would reach its channel once per listener (duplicated socket events):
        a second listener of the same loop returns at once (added by the chat engineer).
        """
        loop = asyncio.get_running_loop()
        if self._listening_loop is loop:
            return  # another listener of this loop is running or starting; receive() waits for it
        self._listening_loop = loop
        try:
            while True:
                try:
                    await self._listen(loop)
                    return  # the library's shutdown notification
                except Exception:
                    if self.event_loop is loop and self.listener_task_is_running is not None:
                        self.listener_task_is_running.clear()
                    logger.warning("channel_layer_listener_lost", exc_info=True)
                    await asyncio.sleep(LISTEN_RETRY_SECONDS)
        finally:
            if self._listening_loop is loop:
                self._listening_loop = None
                if self.event_loop is loop and self.listener_task_is_running is not None:
                    self.listener_task_is_running.clear()

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """LISTEN, catch up on what was sent to this process's channels meanwhile, then queue notifications.

        Unlike the library, which on start DELETEs every unexpired message of every process (another
        process's large message then vanishes before it is read) and queues them all here, the catch-up
        only reads rows of channels this process receives on, after LISTEN so that nothing falls in
        between, and skips ids it has already queued.
        """
        conninfo = psycopg.conninfo.make_conninfo(conninfo="", **self.db_params)
        async with await psycopg.AsyncConnection.connect(
            conninfo=conninfo, autocommit=True, application_name=LISTENER_APPLICATION_NAME
        ) as connection:
            await connection.execute("LISTEN channels_postgres_messages;")
            channels = [channel for channel, held in self._channel_advisory_locks.items() if held]
            if channels:
                query = sql.SQL(
                    "SELECT id, channel, message, extract(epoch from expire)::text FROM {table}"
                    " WHERE channel = ANY(%s) AND expire > now() ORDER BY id"
                ).format(table=sql.Identifier(MESSAGE_TABLE))
                for message_id, channel, message, expire in await (
                    await connection.execute(query, (channels,))
                ).fetchall():
                    if self._first_time(message_id):
                        encoded = base64.b64encode(message).decode()
                        self._get_or_create_queue(channel).put_nowait(f"{message_id}:{channel}:{encoded}:{expire}")
            assert self.listener_task_is_running is not None
            if self.event_loop is loop:
                self.listener_task_is_running.set()
            async for event in connection.notifies():
                if event.payload == "1:shutdown":
                    self.listener_task_is_running.clear()
                    return
                message_id, channel = event.payload.split(":", 2)[:2]
                # Another process holds the channel's lock: the message is its to deliver.
                if self._channel_advisory_locks.get(channel) and self._first_time(int(message_id)):
                    self._get_or_create_queue(channel).put_nowait(event.payload)

    def _first_time(self, message_id: int) -> bool:
        """Whether ``message_id`` has not been queued yet (ids of the last ``_SEEN_IDS`` messages are kept)."""
        if message_id in self._seen:
            return False
        self._seen[message_id] = None
        if len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)
        return True

    async def _get_or_create_channel_advisory_lock(self, channel: str) -> bool:
        """The library takes a session-level advisory lock for every channel a process receives on, so
        that one process handles each; it is never released, and each socket's channel is a new one:
        the locks pile up in PostgreSQL's shared lock table (a few thousand slots) until every query
        that needs a lock fails. A process-specific channel (``prefix.<client prefix>!...``, what every
        consumer and the probe use) is received only by the process that made it: no lock is needed."""
        if "!" in channel and channel.split("!", 1)[0].endswith(self.client_prefix):
            self._channel_advisory_locks[channel] = True
            return True
        return await super()._get_or_create_channel_advisory_lock(channel)

    async def probe(self, timeout: float) -> None:
        """Send a message to this process's probe channel and receive it back within ``timeout`` seconds.

        The channel's advisory lock is taken (by a first ``receive()``) before anything is sent, so the
        listener keeps the notification; a nonce tells this probe's message from one left behind by an
        earlier probe that timed out. Raises ``TimeoutError`` when the layer does not deliver.
        """
        loop = asyncio.get_running_loop()
        if loop not in self._probes:
            self._probes[loop] = (await self.new_channel("health."), asyncio.Lock())
        channel, lock = self._probes[loop]
        async with asyncio.timeout(timeout), lock:
            if not await self._get_or_create_channel_advisory_lock(channel):
                raise RuntimeError("another session holds this process's probe channel")
            listening, is_new = self._get_or_create_listener_task()
            if is_new:
                asyncio.create_task(self.listen_to_all_channels())  # noqa: RUF006  (as receive() does)
            await listening.wait()
            nonce = uuid.uuid4().hex
            await self.send(channel, {"type": "health.ping", "nonce": nonce})
            while (await self.receive(channel)).get("nonce") != nonce:
                pass  # a late answer to an earlier probe that gave up


# The generic probe's channel per layer and event loop, as PostgresChannelLayer keeps its own: one
# channel reused with a nonce, not one per call, so that the answer to a probe that gave up (it lands
# in the channel's receive buffer after the probe cancelled its receive) is read and skipped by the
# next probe instead of staying in that buffer for the life of the process.
_PROBES: weakref.WeakKeyDictionary[
    Any, weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, asyncio.Lock]]
] = weakref.WeakKeyDictionary()


async def probe_layer(layer: Any, timeout: float) -> None:
    """A round trip on any channel layer within ``timeout`` seconds: its own :meth:`probe` when it has one,
    else send to this process's probe channel and receive it back.

    The probe channel comes from ``new_channel()`` with the default prefix, like every consumer's (see
    the module docstring: on ``channels_redis`` another prefix is never served while a socket waits).
    Raises ``TimeoutError`` when the layer does not deliver in time, and the layer's own error when it
    cannot send or receive.
    """
    if hasattr(layer, "probe"):
        await layer.probe(timeout)
        return
    loop = asyncio.get_running_loop()
    probes = _PROBES.setdefault(layer, weakref.WeakKeyDictionary())
    async with asyncio.timeout(timeout):
        if loop not in probes:
            probes.setdefault(loop, (await layer.new_channel(), asyncio.Lock()))
        channel, lock = probes[loop]
        async with lock:
            nonce = uuid.uuid4().hex
            await layer.send(channel, {"type": "health.ping", "nonce": nonce})
            while (await layer.receive(channel)).get("nonce") != nonce:
                pass  # a late answer to an earlier probe that gave up
