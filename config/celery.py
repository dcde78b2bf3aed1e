"""The Celery app: JSON only, late acks with prefetch 1, time limits from settings.

The broker is kombu's filesystem transport under ``var/`` in the embedded default and Redis (or
RabbitMQ) in the distributed mode; see ``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("documind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
