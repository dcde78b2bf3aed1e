"""The PostgreSQL channel layer of the embedded default (``channels_postgres``), with one fix.

``channels_postgres`` runs every query through its own autocommit psycopg pool, except
``group_discard``, which goes through the Django ORM on a database alias named
``channels_postgres`` that this project does not define (and whose transaction would not be the
layer's anyway). :class:`PostgresChannelLayer` routes that one through the pool too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels_postgres import core
from channels_postgres.db import GROUP_CHANNEL_TABLE, DatabaseLayer
from psycopg import sql


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
    """``channels_postgres.core.PostgresChannelLayer`` whose ``group_discard`` needs no extra DB alias."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.django_db = _DatabaseLayer(kwargs.get("PSYCOPG_OPTIONS", {}), self.db_params, logger=self.django_db.logger)
        self._listening_loop: asyncio.AbstractEventLoop | None = None

    async def listen_to_all_channels(self) -> None:
        """One LISTEN loop per event loop (added by the chat engineer).

        ``receive()`` starts a listener whenever the "listening" event is not set yet, so every consumer
        that starts receiving while the first listener is still connecting starts another one, and from
        then on each message reaches its channel once per listener (seen as duplicated socket events).
        """
        loop = asyncio.get_running_loop()
        if self._listening_loop is loop:
            return  # another listener of this loop is running or starting; receive() waits for it
        self._listening_loop = loop
        try:
            await super().listen_to_all_channels()
        finally:
            if self._listening_loop is loop:
                self._listening_loop = None
