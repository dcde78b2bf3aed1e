"""The chat WebSocket's protocol as an AsyncAPI 3.0 document, served at ``/api/v1/schema/asyncapi/``.

The same protocol as the docstring of :mod:`chat.consumers`, for client generators and readers of
``/docs``. ``tests/chat/test_asyncapi.py`` checks that it names every frame type the consumer
handles and every field of the worker events it forwards.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


def _object(required: list[str], properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
    if description:
        schema["description"] = description
    return schema


def _type(name: str) -> dict[str, Any]:
    return {"type": "string", "const": name}


STRING = {"type": "string"}
UUID = {"type": "string", "format": "uuid"}
INTEGER = {"type": "integer"}
ERROR = {
    "type": "object",
    "required": ["type", "message", "details", "request_id"],
    "properties": {
        "type": {"type": "string", "description": "snake_case code, as in the REST API's error envelope"},
        "message": STRING,
        "details": {"type": "object"},
        "request_id": {"type": ["string", "null"]},
    },
}
CITATION = _object(
    ["n", "chunk_id", "document_id", "document_title", "page_start", "page_end", "snippet"],
    {
        "n": INTEGER,
        "chunk_id": {"type": "string", "description": "a string, as everywhere"},
        "document_id": UUID,
        "document_title": STRING,
        "page_start": INTEGER,
        "page_end": INTEGER,
        "snippet": STRING,
        "source": {"type": "string", "enum": ["text", "ocr"], "description": "the PDF's text layer or OCR of a scan"},
        "ocr_confidence": {
            "type": ["number", "null"],
            "description": "OCR: the lowest recognition confidence (0-1) of the cited chunk's scanned pages; "
            "null for the text layer",
        },
    },
)

CLIENT_MESSAGES: dict[str, dict[str, Any]] = {
    "chat.message": _object(
        ["type", "content"],
        {
            "type": _type("chat.message"),
            "content": STRING,
            "session_id": {**UUID, "description": "omit to start a new session"},
            "project": {**UUID, "description": "search only this project's documents"},
            "document_ids": {"type": "array", "items": UUID},
            "model": {"type": "string", "description": "one of the tenant's allowed models"},
            "id": {"description": "any value; echoed as reply_to on chat.start and error"},
        },
        "Ask a question. One answer at a time per connection.",
    ),
    "chat.cancel": _object(
        ["type"],
        {"type": _type("chat.cancel"), "message_id": UUID},
        "Stop the answer streaming on this connection (asked on it, or resumed on it after a reconnect to any "
        "server process); it is saved as cancelled with the text said so far and ends with chat.end.",
    ),
    "chat.resume": _object(
        ["type", "message_id"],
        {"type": _type("chat.resume"), "message_id": UUID, "offset": {**INTEGER, "description": "characters received"}},
        "After a reconnect: chat.start (resumed: true), one chat.token with the rest so far, then live tokens.",
    ),
    "ping": _object(["type"], {"type": _type("ping")}, "Answered with pong."),
}

SERVER_MESSAGES: dict[str, dict[str, Any]] = {
    "chat.start": _object(
        ["type", "message_id", "session_id"],
        {
            "type": _type("chat.start"),
            "message_id": UUID,
            "question_id": UUID,
            "session_id": UUID,
            "session_title": STRING,
            "created_session": {"type": "boolean"},
            "model": STRING,
            "resumed": {"type": "boolean"},
            "reply_to": {},
        },
    ),
    "chat.token": _object(
        ["type", "message_id", "delta", "offset"],
        {
            "type": _type("chat.token"),
            "message_id": UUID,
            "delta": STRING,
            "offset": {**INTEGER, "description": "where delta starts in the answer, in characters"},
        },
    ),
    "chat.end": _object(
        ["type", "message_id", "status", "content", "citations"],
        {
            "type": _type("chat.end"),
            "message_id": UUID,
            "session_id": UUID,
            "status": {"type": "string", "enum": ["completed", "cancelled", "failed", "interrupted"]},
            "content": STRING,
            "citations": {"type": "array", "items": CITATION},
            "usage": {"type": "object"},
            "model": STRING,
            "ttft_ms": {"type": ["number", "null"]},
            "total_ms": {"type": ["number", "null"]},
            "error": {**ERROR, "type": ["object", "null"]},
        },
    ),
    "document.status": _object(
        ["type", "document_id", "task_id", "status", "progress", "stage", "error", "timings"],
        {
            "type": _type("document.status"),
            "document_id": UUID,
            "task_id": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["pending", "processing", "ready", "failed"]},
            "progress": {**INTEGER, "minimum": 0, "maximum": 100},
            "stage": STRING,
            "error": {"type": ["object", "null"]},
            "timings": {
                "type": "object",
                "additionalProperties": {"type": "number"},
                "description": "seconds spent in each stage so far: extract, ocr, chunk, embed, store, index "
                "(extract and ocr run in child processes, overlapping the others)",
            },
        },
        "Ingestion of one of your documents moved on.",
    ),
    "task.progress": _object(
        ["type", "task_id", "kind", "status", "progress", "stage"],
        {
            "type": _type("task.progress"),
            "task_id": STRING,
            "kind": STRING,
            "status": STRING,
            "progress": INTEGER,
            "stage": STRING,
        },
        "One of your other background tasks moved on.",
    ),
    "error": _object(
        ["type", "error"],
        {"type": _type("error"), "error": ERROR, "reply_to": {}},
        "A bad frame, a rate limit, a quota or an upstream failure; the socket stays open.",
    ),
    "pong": _object(["type"], {"type": _type("pong"), "reply_to": {}}),
}


def _key(name: str) -> str:
    return name.replace(".", "_")


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``/ws/chat/``."""
    messages = {
        _key(name): {"name": name, "payload": payload}
        for name, payload in {**CLIENT_MESSAGES, **SERVER_MESSAGES}.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"{settings.APP_NAME} chat socket",
            "version": settings.APP_VERSION,
            "description": (
                "Streamed, cited answers and live document status. Authenticate with the access token of "
                "POST /api/v1/auth/login (or verify-code) in the query string, or an API key (subprotocol "
                "apikey.<key>, or a first frame {type: auth, api_key}). Close codes: 4401 missing, bad, "
                "expired or revoked token or key, also when the token the socket opened with (or the key) "
                "expires while connected: reconnect with a fresh one and chat.resume; 4403 inactive user or "
                "tenant. Browsers must be on an allowed origin "
                "(WEBSOCKET_ALLOWED_ORIGINS); clients that send no Origin header are not checked."
            ),
        },
        "channels": {
            "chat": {
                "address": "/ws/chat/?token={token}",
                "parameters": {"token": {"description": "An access token (JWT)."}},
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": {
            "sendToServer": {
                "action": "receive",
                "channel": {"$ref": "#/channels/chat"},
                "messages": [{"$ref": f"#/channels/chat/messages/{_key(name)}"} for name in CLIENT_MESSAGES],
            },
            "receiveFromServer": {
                "action": "send",
                "channel": {"$ref": "#/channels/chat"},
                "messages": [{"$ref": f"#/channels/chat/messages/{_key(name)}"} for name in SERVER_MESSAGES],
            },
        },
        "components": {"messages": messages},
    }


class AsyncAPIView(APIView):
    """``GET /api/v1/schema/asyncapi/``: the socket protocol (public, like the OpenAPI schema)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(summary="The chat WebSocket's protocol (AsyncAPI 3.0 document)", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(asyncapi_document())
