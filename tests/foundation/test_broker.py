"""The embedded default's broker (``config.broker``): a message is never read before it is written whole.

With kombu's own filesystem transport a reader polling the queue folder while a message is written
moves it away and reads it empty: JSONDecodeError in the worker's consumer, the message deleted and
lost. A reader thread polls while a writer puts 300 messages of 200 KB: every one must arrive intact
(kombu's transport lost 13 of 300 here on this machine).
"""

from __future__ import annotations

import threading
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection
from kombu.transport import get_transport_cls

import config.celery  # noqa: F401  (installs the transport, as every process using Celery does)
from config.broker import Transport

MESSAGES = 300


def test_filesystem_urls_get_our_transport() -> None:
    assert get_transport_cls("filesystem") is Transport
    assert Connection("filesystem://").transport_cls == "filesystem"
    assert isinstance(Connection("filesystem://").transport, Transport)


def test_a_reader_polling_during_writes_gets_every_message_whole(tmp_path: Path) -> None:
    for sub in ("queue", "processed"):
        (tmp_path / sub).mkdir()
    options = {
        "data_folder_in": str(tmp_path / "queue"),
        "data_folder_out": str(tmp_path / "queue"),
        "processed_folder": str(tmp_path / "processed"),
        "store_processed": False,
    }
    received: list[Any] = []
    errors: list[str] = []

    def read() -> None:
        with Connection("filesystem://", transport_options=options) as connection:
            channel = connection.default_channel
            while len(received) + len(errors) < MESSAGES:
                try:
                    received.append(channel._get("q"))
                except Empty:
                    continue
                except Exception as exc:  # what the worker's consumer would die of
                    errors.append(repr(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with Connection("filesystem://", transport_options=options) as connection:
        channel = connection.default_channel
        for number in range(MESSAGES):
            channel._put("q", {"n": number, "body": "x" * 200_000})
    reader.join(timeout=60)

    assert errors == [], f"{len(errors)} of {MESSAGES} messages read before they were whole: {errors[:3]}"
    assert sorted(message["n"] for message in received) == list(range(MESSAGES))
    assert all(len(message["body"]) == 200_000 for message in received)
    assert not list((tmp_path / "queue").iterdir())  # nothing left behind, not even a .part
