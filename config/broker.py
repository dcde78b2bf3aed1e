"""The embedded default's broker: kombu's filesystem transport, with messages that appear whole.

kombu's filesystem transport creates a message file under its final name, then writes it. A worker
polling the folder in between moves the file away and reads it empty: the consumer fails on the JSON
and the message, already deleted, is lost (a test's task stayed pending forever; 13 of 300 messages
in ``tests/foundation/test_broker.py``'s race without this). Here a message is written under a name
the reader skips (``<name>.part``: it takes only ``*.<queue>.msg``) and renamed into place, which is
atomic within one filesystem. :mod:`config.celery` makes this the ``filesystem://`` transport.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "config.broker:Transport"


class Channel(filesystem.Channel):
    """kombu's channel, but a message becomes visible only once it is written whole."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's naming (the reader's order)
        final = Path(self.data_folder_out) / name
        partial = final.with_name(name + ".part")
        try:
            partial.write_bytes(str_to_bytes(dumps(payload)))
            partial.replace(final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """``filesystem://`` with :class:`Channel`."""

    Channel = Channel


def install() -> None:
    """Make ``filesystem://`` URLs use :class:`Transport` in this process (kombu resolves by alias)."""
    from kombu import transport

    transport.TRANSPORT_ALIASES["filesystem"] = TRANSPORT
    transport._transport_cache.pop("filesystem", None)
