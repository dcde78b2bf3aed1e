"""System checks for the documents settings (run by ``manage.py check`` and at start-up)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register()
def documents_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from documents.embeddings import PROVIDERS
    from documents.extraction import EXTRACTORS
    from documents.vectors import MAX_HNSW_DIMENSIONS

    errors: list[CheckMessage] = []
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
    errors += ocr_settings_check()
    return errors


def ocr_settings_check() -> list[CheckMessage]:
    """OCR_ENGINE must be known; an engine that is not installed is a warning (scans fail ocr_unavailable)."""
    from documents.ocr import ENGINES, engine_installed

    if settings.OCR_ENGINE not in ENGINES:
        return [Error(f"OCR_ENGINE must be one of {', '.join(ENGINES)}.", id="documents.E005")]
    if settings.OCR_ENABLED and not engine_installed(settings.OCR_ENGINE):
        return [
            Warning(
                f"OCR_ENGINE={settings.OCR_ENGINE} is not installed here: scanned pages will fail with ocr_unavailable.",
                hint="pip install --no-deps -r requirements/ocr.txt, or apt install tesseract-ocr, or OCR_ENABLED=false.",
                id="documents.W001",
            )
        ]
    return []
