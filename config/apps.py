"""Project-wide wiring that needs the app registry: request-log metadata and OpenAPI extensions."""

from __future__ import annotations

from django.apps import AppConfig


class ProjectConfig(AppConfig):
    """Not an app with models: the place where ``config`` connects its signal receivers."""

    name = "config"
    label = "project"
    verbose_name = "DocuMind project"

    def ready(self) -> None:
        from django_structlog import signals as structlog_signals

        from config import logging as project_logging
        from config import openapi  # noqa: F401  (registers the bearer scheme extension)

        structlog_signals.bind_extra_request_metadata.connect(
            project_logging.request_started_metadata, dispatch_uid="documind.request_started"
        )
        structlog_signals.bind_extra_request_finished_metadata.connect(
            project_logging.request_finished_metadata, dispatch_uid="documind.request_finished"
        )
        structlog_signals.bind_extra_request_failed_metadata.connect(
            project_logging.request_failed_metadata, dispatch_uid="documind.request_failed"
        )
