"""Celery tasks of the integrations: webhook deliveries."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings

from integrations.models import WebhookDelivery
from integrations.webhooks import delivery_attempt, delivery_finish, delivery_schedule_retry

logger = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """One attempt failed and more are allowed: Celery retries with exponential backoff."""


def backoff_seconds(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: base × 2^retries, capped, with jitter (50–100 %)
    so endpoints that failed together do not all come back at the same second."""
    ceiling = min(settings.WEBHOOK_RETRY_BACKOFF_MAX_SECONDS, settings.WEBHOOK_RETRY_BACKOFF_SECONDS * 2**retries)
    return ceiling * random.uniform(0.5, 1.0)


@shared_task(
    bind=True,
    name="integrations.deliver_webhook",
    acks_late=True,
    # Retries are bounded by WEBHOOK_MAX_ATTEMPTS in the body rather than here: it is a setting, and
    # the attempt count lives on the row (a redelivery starts a new row), not in Celery's headers.
    max_retries=None,
    ignore_result=True,
)
def deliver_webhook(self, delivery_id: str) -> None:  # type: ignore[no-untyped-def]
    """Attempt one delivery; on failure retry with exponential backoff until ``WEBHOOK_MAX_ATTEMPTS``.

    Returns quietly when the row or its endpoint is gone, the endpoint was disabled, or the row
    already succeeded (a duplicate run).
    """
    delivery = WebhookDelivery.objects.select_related("endpoint", "endpoint__tenant").filter(pk=delivery_id).first()
    if delivery is None or delivery.status in (WebhookDelivery.Status.SUCCEEDED, WebhookDelivery.Status.FAILED):
        return
    if not delivery.endpoint.is_active:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED, error="The endpoint is disabled."
        )
        return
    if delivery_attempt(delivery):
        delivery_finish(delivery, succeeded=True)
        return
    if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        delivery_finish(delivery, succeeded=False)
        return
    countdown = backoff_seconds(self.request.retries)
    delivery_schedule_retry(delivery, countdown=countdown)
    raise self.retry(countdown=countdown, exc=DeliveryFailed(delivery.error))
