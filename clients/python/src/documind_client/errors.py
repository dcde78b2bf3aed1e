"""The API's error envelope as an exception."""

from __future__ import annotations

from typing import Any


class DocuMindError(Exception):
    """An error answer: ``status`` (HTTP status or socket close code), ``type`` (the envelope's
    snake_case code, e.g. ``insufficient_scope``), ``message``, ``details`` and ``request_id``."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.details = details or {}
        self.request_id = request_id

    @classmethod
    def from_envelope(cls, status: int, body: Any) -> DocuMindError:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status, "http_error", str(body)[:500])
        return cls(
            status,
            str(error.get("type", "error")),
            str(error.get("message", "")),
            error.get("details") or {},
            error.get("request_id"),
        )

    @property
    def retry_after(self) -> int | None:
        value = self.details.get("retry_after")
        return int(value) if isinstance(value, (int, float)) else None


class TimeoutWaiting(DocuMindError):
    """A wait (for a document to be ready, for an event) ran out of time."""
