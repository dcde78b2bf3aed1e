"""The Celery app: JSON only, late acks with prefetch 1, time limits from settings.

The broker is kombu's filesystem transport under ``var/`` in the embedded default and Redis (or
RabbitMQ) in the distributed mode; see ``CELERY_BROKER_URL``. Task log lines carry the request id
(and user) of the request that enqueued them: django-structlog puts them in the message headers on
publish (connected by its AppConfig in every process) and binds them again in the worker (the boot
step below).
"""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from django_structlog.celery.steps import DjangoStructLogInitStep

from config import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
broker.install()  # filesystem:// messages appear whole (config.broker)

app = Celery("documind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["worker"].add(DjangoStructLogInitStep)
app.autodiscover_tasks()


@setup_logging.connect
def configure_worker_logging(**kwargs: Any) -> None:
    """Use Django's ``LOGGING`` (structlog, ``LOG_FORMAT``/``LOG_LEVEL``) instead of Celery's own."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
