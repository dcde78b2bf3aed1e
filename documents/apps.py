from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_vector_indexes(using: str = "default", **kwargs: Any) -> None:
    """After ``migrate``: an HNSW index for every configured embedder and every one with stored vectors."""
    from django.db import connections

    from documents.embeddings import configured_embedders
    from documents.vectors import ensure_index, stored_embedders

    connection = connections[using]
    for model, dimensions in {*configured_embedders(), *stored_embedders(connection)}:
        ensure_index(model, dimensions, using=connection)


class DocumentsConfig(AppConfig):
    name = "documents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from documents import checks, signals, tasks  # noqa: F401  (system checks; file removal; the Celery task)

        post_migrate.connect(ensure_vector_indexes, sender=self, dispatch_uid="documents_vector_indexes")
