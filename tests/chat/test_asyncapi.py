"""The socket protocol's AsyncAPI document: served beside the OpenAPI schema, and true to the code."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from django.test import Client

from chat.consumers import ChatConsumer
from tasks.events import DocumentStatusEvent, TaskProgressEvent, document_status_event, task_progress_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(client: Client) -> dict[str, Any]:
    response = client.get("/api/v1/schema/asyncapi/")
    assert response.status_code == 200
    return response.json()


def _messages(document: dict[str, Any], operation: str) -> dict[str, dict[str, Any]]:
    refs = [ref["$ref"].rsplit("/", 1)[-1] for ref in document["operations"][operation]["messages"]]
    return {document["components"]["messages"][key]["name"]: document["components"]["messages"][key] for key in refs}


def test_served_publicly_beside_the_openapi_schema(document: dict[str, Any]) -> None:
    assert document["asyncapi"].startswith("3.")
    assert document["channels"]["chat"]["address"] == "/ws/chat/?token={token}"
    for channel_ref in (op["channel"]["$ref"] for op in document["operations"].values()):
        assert channel_ref == "#/channels/chat"
    for key, ref in document["channels"]["chat"]["messages"].items():
        assert ref["$ref"] == f"#/components/messages/{key}"


def test_every_frame_the_consumer_handles_is_documented(document: dict[str, Any]) -> None:
    assert set(_messages(document, "sendToServer")) == set(ChatConsumer.frame_handlers)


def test_worker_events_are_documented_field_for_field(document: dict[str, Any]) -> None:
    sent = _messages(document, "receiveFromServer")
    for name, typed, built in (
        ("document.status", DocumentStatusEvent, document_status_event(document_id=1, task_id=2, status="ready", progress=100, stage="done")),
        ("task.progress", TaskProgressEvent, task_progress_event(task_id=3, kind="k", status="processing", progress=5, stage="s")),
    ):  # fmt: skip
        payload = sent[name]["payload"]
        assert set(payload["properties"]) == set(typing.get_type_hints(typed)) == set(built), name
        assert set(payload["required"]) == set(built), name
        assert isinstance(built["task_id"], str)  # ids are strings in events too
    assert {"chat.start", "chat.token", "chat.end", "error", "pong"} <= set(sent)
    citation = sent["chat.end"]["payload"]["properties"]["citations"]["items"]
    assert citation["properties"]["chunk_id"]["type"] == "string"
