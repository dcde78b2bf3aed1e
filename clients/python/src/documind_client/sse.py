"""A minimal Server-Sent Events reader (the WHATWG event-stream format) over an httpx response."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class ServerEvent:
    """One event: ``event`` (its type, e.g. ``chat.token``), ``id`` and the JSON ``data``."""

    event: str
    id: str | None
    data: dict[str, Any]


def iter_events(response: httpx.Response) -> Iterator[ServerEvent]:
    """Parse ``response``'s body as it arrives; comments (keep-alives) are skipped."""
    event, event_id, data_lines = "message", None, []
    for line in response.iter_lines():
        if line == "":
            if data_lines:
                raw = "\n".join(data_lines)
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = {"raw": raw}
                yield ServerEvent(event, event_id, data if isinstance(data, dict) else {"value": data})
            event, data_lines = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data_lines.append(value)
        elif name == "id":
            event_id = value
