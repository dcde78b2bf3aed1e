"""The events that produce webhooks: document.ready and document.failed from ingestion,
chat.message.completed from an answer, usage.quota_reached from a refused question, api_key.created.
The first is the issue's end-to-end flow: a script with an API key uploads; a receiver gets a signed
``document.ready`` it verifies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from standardwebhooks import Webhook

from documents.ingestion import IngestionFailed
from documents.models import Document
from integrations.models import WebhookDelivery
from integrations.services import webhook_endpoint_create
from integrations.tasks import deliver_webhook
from tests.api_keys import key_client
from tests.documents.conftest import ingest, known_pages, upload
from tests.documents.pdfs import make_image_pdf, make_pdf

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _offline(settings: Any) -> None:
    settings.EMBEDDING_PROVIDER = "hashing"
    settings.CHAT_PROVIDER = "extractive"
    settings.OPENAI_API_KEY = ""


def deliver_all() -> list[WebhookDelivery]:
    pending = list(WebhookDelivery.objects.filter(status="pending"))
    for row in pending:
        deliver_webhook.apply(args=[str(row.pk)])
    return list(WebhookDelivery.objects.filter(pk__in=[r.pk for r in pending]))


def test_script_with_a_key_uploads_and_a_receiver_verifies_document_ready(
    make_key: Any, receivers: Any, tenant: Any, django_capture_on_commit_callbacks: Any
) -> None:
    receiver = receivers("https")
    endpoint = webhook_endpoint_create(
        tenant=tenant, created_by=None, url=receiver.url, events=["document.ready", "document.failed"]
    )
    key, raw = make_key(["documents:write", "documents:read", "search"])
    client = key_client(raw)
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/api/v1/documents/",
        {"file": SimpleUploadedFile("r.pdf", make_pdf(known_pages()), content_type="application/pdf")},
        format="multipart",
    )
    assert response.status_code == 202, response.content[:300]
    document = Document.objects.get(pk=response.json()["id"])
    assert document.owner_id == key.user_id
    with django_capture_on_commit_callbacks(execute=True):
        ingest(document)
    (delivery,) = deliver_all()
    assert delivery.status == "succeeded", delivery.error
    (got,) = receiver.received
    payload = Webhook(endpoint.secret).verify(got.body, got.headers)
    assert payload["type"] == "document.ready"
    assert payload["data"]["document_id"] == str(document.pk) and payload["data"]["status"] == "ready"
    assert payload["data"]["chunk_count"] > 0
    # and the script searches what it uploaded
    hits = client.post("/api/v1/search/", {"query": "quarterly report"}, format="json")
    assert hits.status_code == 200


def test_failed_ingestion_sends_document_failed(api: Any, receivers: Any, tenant: Any) -> None:
    receiver = receivers("http")
    webhook_endpoint_create(tenant=tenant, created_by=None, url=receiver.url, events=["document.failed"])
    response = upload(api, make_image_pdf(pages=1))
    assert response.status_code == 202, response.content[:300]
    document = Document.objects.get(pk=response.json()["id"])
    with pytest.raises(IngestionFailed):
        ingest(document)
    deliver_all()
    (got,) = receiver.received
    body = json.loads(got.body)
    assert body["type"] == "document.failed" and body["data"]["error"]["type"] == "pdf_no_text"


def test_completed_answer_sends_chat_message_completed(api: Any, user: Any, receivers: Any, tenant: Any) -> None:
    from tests.chat.conftest import HANDBOOK, make_ready_document

    receiver = receivers("http")
    webhook_endpoint_create(tenant=tenant, created_by=None, url=receiver.url, events=["chat.message.completed"])
    make_ready_document(tenant=tenant, owner=user, pages=HANDBOOK)
    session = api.post("/api/v1/chat/sessions/", {"title": "q"}, format="json").json()
    answer = api.post(
        f"/api/v1/chat/sessions/{session['id']}/messages/", {"content": "How many vacation days?"}, format="json"
    ).json()
    deliver_all()
    (got,) = receiver.received
    body = json.loads(got.body)
    assert body["type"] == "chat.message.completed"
    assert body["data"]["message_id"] == answer["id"] and "twenty-five" in body["data"]["content"]
    assert body["data"]["citations"]


@pytest.mark.django_db(transaction=True)
def test_quota_reached_is_announced_once_a_day(
    make_key: Any, receivers: Any, tenant: Any, settings: Any, fake_openai: Any
) -> None:
    from tenants.usage import usage_record
    from tests.chat.conftest import HANDBOOK, make_ready_document

    settings.CHAT_PROVIDER, settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "openai", "sk-t", fake_openai.base_url
    receiver = receivers("http")
    webhook_endpoint_create(tenant=tenant, created_by=None, url=receiver.url, events=["usage.quota_reached"])
    key, raw = make_key(["chat"], daily_token_quota=50)
    make_ready_document(tenant=tenant, owner=key.user, pages=HANDBOOK)
    usage_record(tenant=tenant, user=key.user, kind="chat", model="m", prompt_tokens=60)
    session = key_client(raw).post("/api/v1/chat/sessions/", {"title": "q"}, format="json").json()
    for _ in range(2):
        response = key_client(raw).post(
            f"/api/v1/chat/sessions/{session['id']}/messages/", {"content": "Vacation days?"}, format="json"
        )
        assert response.status_code == 429
    deliver_all()
    (got,) = receiver.received  # once, although refused twice
    body = json.loads(got.body)
    assert body["type"] == "usage.quota_reached"
    assert body["data"]["scope"] == "user" and body["data"]["user_id"] == str(key.user_id)
    assert body["data"]["limit"] == 50
