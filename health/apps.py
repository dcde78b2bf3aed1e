from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from celery.signals import worker_process_shutdown

        worker_process_shutdown.connect(_mark_metrics_process_dead, weak=False)


def _mark_metrics_process_dead(pid: int | None = None, **kwargs: Any) -> None:
    """A prefork child exits: in multiprocess mode its live gauges stop counting (prometheus-client)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        from config.metrics_processes import process_identifier

        multiprocess.mark_process_dead(process_identifier(pid))
