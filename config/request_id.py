"""The current request id, in a context variable that survives sync/async hops."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Accept the ids proxies and clients commonly send (UUIDs, ULIDs, hex, dotted/dashed tokens), bounded.
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{7,127}$")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(candidate: str | None) -> str:
    """The client's id when it is well formed, otherwise a fresh one."""
    if candidate and VALID_REQUEST_ID.match(candidate):
        return candidate
    return new_request_id()


def set_request_id(value: str | None) -> object:
    """Make ``value`` the current request id; returns the token for :func:`reset_request_id`."""
    return _request_id.set(value)


def reset_request_id(token: object) -> None:
    """Restore the request id that was current before :func:`set_request_id`."""
    _request_id.reset(token)  # type: ignore[arg-type]


def get_request_id() -> str | None:
    return _request_id.get()
