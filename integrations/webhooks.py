"""Signed webhooks: emitting events, signing them (Standard Webhooks), and one delivery attempt.

An event is emitted inside the transaction that causes it (:func:`webhook_emit`): one
:class:`~integrations.models.WebhookDelivery` row per active endpoint subscribed to it, and the
Celery task is queued only when that transaction commits, so a rolled-back change sends nothing.
The task (:mod:`integrations.tasks`) calls :func:`delivery_attempt` and retries with exponential
backoff; a delivery whose every attempt failed counts against its endpoint, which is disabled after
``WEBHOOK_DISABLE_AFTER_FAILURES`` such deliveries in a row (with an audit row and a
``webhook.disabled`` event to the tenant's other endpoints).

Requests follow the Standard Webhooks spec: ``webhook-id`` (the message id, the same across
redeliveries), ``webhook-timestamp`` (Unix seconds), ``webhook-signature`` (``v1,<base64 HMAC-SHA256
of "id.timestamp.body">`` with the endpoint's ``whsec_`` secret, made by the ``standardwebhooks``
library, which receivers can use to verify with a timestamp tolerance). The body is
``{"type", "timestamp", "data"}``.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from integrations import netguard
from integrations.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

logger = logging.getLogger(__name__)

USER_AGENT = "DocuMind-Webhooks/1"


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` and 32 random bytes in base64 (the Standard Webhooks form)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def sign(*, secret: str, message_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header value for ``body``."""
    return Webhook(secret).sign(message_id, timestamp, body)


def signed_headers(*, secret: str, message_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (a fresh timestamp each time)."""
    now = (now or timezone.now()).astimezone(UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(secret=secret, message_id=message_id, timestamp=now, body=body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def event_payload(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": timezone.now().isoformat().replace("+00:00", "Z"), "data": data}


def enqueue_deliveries(delivery_ids: list[str]) -> None:
    """Hand deliveries to Celery (call it on commit)."""
    from integrations.tasks import deliver_webhook

    for delivery_id in delivery_ids:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:  # the broker is down: the row stays pending, redeliverable
            logger.exception("webhook_enqueue_failed", extra={"delivery_id": delivery_id})


def webhook_emit(*, tenant: Any, event_type: str, data: dict[str, Any], exclude: Any | None = None) -> list[str]:
    """Queue ``event_type`` for every active endpoint of ``tenant`` that subscribed to it.

    Rows are written now, in the caller's transaction; the deliveries start when it commits. Never
    raises (it is called from bookkeeping paths such as ingestion): failures are logged.
    """
    if tenant is None:
        return []
    try:
        endpoints = WebhookEndpoint.objects.for_tenant(tenant).filter(is_active=True, events__contains=[event_type])
        if exclude is not None:
            endpoints = endpoints.exclude(pk=exclude.pk)
        payload = event_payload(event_type, data)
        with transaction.atomic():
            rows = [
                WebhookDelivery.objects.create(
                    tenant_id=endpoint.tenant_id,
                    endpoint=endpoint,
                    message_id=new_message_id(),
                    event_type=event_type,
                    payload=payload,
                )
                for endpoint in endpoints
            ]
    except Exception:
        logger.exception("webhook_emit_failed", extra={"event_type": event_type})
        return []
    ids = [str(row.pk) for row in rows]
    if ids:
        transaction.on_commit(lambda: enqueue_deliveries(ids))
    return ids


# --- event data (one builder per event) --------------------------------------------------------


def document_webhook_data(document: Any, *, error: dict[str, Any] | None = None) -> dict[str, Any]:
    """``document.ready`` / ``document.failed``: the document as the API shows it, with the failure's error."""
    return {
        "document_id": str(document.pk),
        "title": document.title,
        "status": document.status,
        "project_id": str(document.project_id) if document.project_id else None,
        "owner_id": str(document.owner_id),
        "task_id": str(document.task_id) if document.task_id else None,
        "page_count": document.page_count,
        "chunk_count": document.chunk_count,
        "error": error,
    }


def announce_document(document: Any, *, error: dict[str, Any] | None = None) -> None:
    """``document.ready`` or ``document.failed`` (by the document's status) to the tenant's endpoints."""
    webhook_emit(
        tenant=document.tenant,
        event_type=WebhookEvent.DOCUMENT_READY if document.status == "ready" else WebhookEvent.DOCUMENT_FAILED,
        data=document_webhook_data(document, error=error),
    )


def chat_message_webhook_data(message: Any) -> dict[str, Any]:
    """``chat.message.completed``: the answer with its citations and usage."""
    return {
        "message_id": str(message.pk),
        "session_id": str(message.session_id),
        "user_id": str(message.session.user_id) if message.session_id else None,
        "status": message.status,
        "model": message.model,
        "content": message.content,
        "citations": message.citations,
        "usage": {
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.prompt_tokens + message.completion_tokens,
        },
    }


def _fail_message(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout: {type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"[:500]


def delivery_attempt(delivery: WebhookDelivery) -> bool:
    """Make one attempt (check the URL, sign, POST, record); True when the receiver answered 2xx.

    A refused URL fails the attempt without any connection. The row records the attempt count,
    status code, an excerpt of the answer, the latency and the error.
    """
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    now = timezone.now()
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_code, delivery.response_excerpt, delivery.latency_ms, delivery.error = None, "", None, ""
    ok = False
    try:
        target = netguard.check_url(endpoint.url)
        response = netguard.post(
            target,
            body=body.encode(),
            headers=signed_headers(secret=endpoint.secret, message_id=delivery.message_id, body=body, now=now),
        )
    except netguard.UnsafeURL as exc:
        delivery.error = f"{exc.code}: {exc}"[:500]
    except httpx.HTTPError as exc:
        delivery.error = _fail_message(exc)
    else:
        delivery.response_code = response.status_code
        delivery.response_excerpt = response.excerpt[:500]
        delivery.latency_ms = response.latency_ms
        ok = 200 <= response.status_code < 300
        if not ok:
            delivery.error = f"HTTP {response.status_code}"
    if ok:
        delivery.status = WebhookDelivery.Status.SUCCEEDED
        delivery.delivered_at = timezone.now()
    delivery.save()
    return ok


def delivery_schedule_retry(delivery: WebhookDelivery, *, countdown: float) -> None:
    delivery.status = WebhookDelivery.Status.RETRYING
    delivery.next_attempt_at = timezone.now() + timezone.timedelta(seconds=countdown)
    delivery.save(update_fields=["status", "next_attempt_at"])


@transaction.atomic
def delivery_finish(delivery: WebhookDelivery, *, succeeded: bool) -> None:
    """After the last attempt: mark the row and keep the endpoint's run of failures (disable it at the limit)."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
    if succeeded:
        if endpoint.consecutive_failures:
            endpoint.consecutive_failures = 0
            endpoint.save(update_fields=["consecutive_failures", "updated_at"])
        return
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    delivery.status = WebhookDelivery.Status.FAILED
    endpoint.consecutive_failures += 1
    fields = ["consecutive_failures", "updated_at"]
    limit = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    if endpoint.is_active and limit and endpoint.consecutive_failures >= limit:
        endpoint.is_active = False
        endpoint.disabled_at = timezone.now()
        endpoint.disabled_reason = f"{endpoint.consecutive_failures} deliveries in a row failed every attempt."
        fields += ["is_active", "disabled_at", "disabled_reason"]
        endpoint.save(update_fields=fields)
        _announce_disabled(endpoint)
        return
    endpoint.save(update_fields=fields)


def _announce_disabled(endpoint: WebhookEndpoint) -> None:
    from audit.models import AuditEvent
    from audit.services import audit_record

    audit_record(
        action="webhook.disabled",
        tenant=endpoint.tenant,
        target=endpoint,
        actor_type=AuditEvent.ActorType.SYSTEM,
        details={"reason": endpoint.disabled_reason, "consecutive_failures": endpoint.consecutive_failures},
    )
    webhook_emit(
        tenant=endpoint.tenant,
        event_type=WebhookEvent.WEBHOOK_DISABLED,
        data={"endpoint_id": str(endpoint.pk), "url": endpoint.url, "reason": endpoint.disabled_reason},
        exclude=endpoint,
    )
