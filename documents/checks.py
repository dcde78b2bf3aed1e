"""System checks for the documents settings (run by ``manage.py check`` and at start-up)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def documents_settings_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    from documents.embeddings import PROVIDERS
    from documents.extraction import EXTRACTORS
    from documents.vectors import MAX_HNSW_DIMENSIONS

    errors: list[Error] = []
    if not 1 <= settings.EMBEDDING_DIMENSIONS <= MAX_HNSW_DIMENSIONS:
        errors.append(
            Error(
                f"EMBEDDING_DIMENSIONS must be between 1 and {MAX_HNSW_DIMENSIONS} (pgvector's HNSW limit for halfvec).",
                id="documents.E001",
            )
        )
    if settings.PDF_EXTRACTOR not in EXTRACTORS:
        errors.append(Error(f"PDF_EXTRACTOR must be one of {sorted(EXTRACTORS)}.", id="documents.E002"))
    if not 0 <= settings.CHUNK_OVERLAP < settings.CHUNK_TOKENS <= 8191:
        errors.append(Error("Need 0 <= CHUNK_OVERLAP < CHUNK_TOKENS <= 8191.", id="documents.E003"))
    if (settings.EMBEDDING_PROVIDER or "auto").lower() not in {"auto", *PROVIDERS}:
        errors.append(Error(f"EMBEDDING_PROVIDER must be auto or one of {', '.join(PROVIDERS)}.", id="documents.E004"))
    return errors
