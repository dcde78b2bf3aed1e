"""Checks on an uploaded PDF, made before anything is stored.

Order (each refusal in the error envelope): no file or an empty one (400), larger than
``MAX_UPLOAD_MB`` (413; refused from ``Content-Length`` before the body is read, and by
:class:`MaxSizeUploadHandler` while it streams when there is no usable length), not a PDF by its
first bytes whatever the name or content type says (415), unreadable (422 ``pdf_invalid``),
encrypted and not openable with an empty password (422 ``pdf_encrypted``), more than
``MAX_PDF_PAGES`` pages (422 ``pdf_too_many_pages``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from config.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType, ValidationFailed
from documents.extraction import PdfError, get_extractor, looks_like_pdf

# Room for the multipart boundaries and the other form fields on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024


def max_upload_bytes() -> int:
    return int(settings.MAX_UPLOAD_MB) * 1024 * 1024


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The file is larger than {settings.MAX_UPLOAD_MB} MB.", details={"max_upload_mb": settings.MAX_UPLOAD_MB}
    )


class MaxSizeUploadHandler(FileUploadHandler):
    """First in the handler chain: refuses the request as soon as the streamed body passes the limit."""

    def __init__(self, request: Any = None, *, limit: int | None = None) -> None:
        super().__init__(request)
        self.limit = max_upload_bytes() if limit is None else limit
        self.received = 0

    def handle_raw_input(
        self, input_data: Any, META: Any, content_length: int, boundary: Any, encoding: Any = None
    ) -> None:
        if content_length and content_length > self.limit + MULTIPART_OVERHEAD:
            raise _too_large()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            raise _too_large()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def check_content_length(request: Any) -> None:
    """413 from the declared length alone, before a byte of the body is read."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_upload_bytes() + MULTIPART_OVERHEAD:
        raise _too_large()


def install_upload_limit(request: Any) -> None:
    """Check ``Content-Length`` and put :class:`MaxSizeUploadHandler` first (before the body is parsed)."""
    check_content_length(request)
    django_request = getattr(request, "_request", request)
    handlers = [h for h in django_request.upload_handlers if not isinstance(h, MaxSizeUploadHandler)]
    django_request.upload_handlers = [MaxSizeUploadHandler(django_request), *handlers]


@dataclass(frozen=True)
class CheckedPdf:
    """An upload that passed every check."""

    sha256: str
    size: int
    page_count: int


def _source(upload: UploadedFile) -> str | bytes:
    path = getattr(upload, "temporary_file_path", None)
    if callable(path):
        return path()
    upload.seek(0)
    data = upload.read()
    upload.seek(0)
    return data


def check_pdf_upload(upload: UploadedFile | None) -> CheckedPdf:
    """Run the checks of the module docstring; returns the file's digest, size and page count."""
    if upload is None:
        raise ValidationFailed(
            "No file was uploaded (multipart field 'file').", details={"fields": {"file": ["No file was submitted."]}}
        )
    if not upload.size:
        raise ValidationFailed(
            "The uploaded file is empty.", details={"fields": {"file": ["The submitted file is empty."]}}
        )
    if upload.size > max_upload_bytes():
        raise _too_large()

    digest = hashlib.sha256()
    upload.seek(0)
    head = b""
    for piece in upload.chunks():
        if len(head) < 1024:
            head += piece[: 1024 - len(head)]
        digest.update(piece)
    upload.seek(0)
    if not looks_like_pdf(head):
        raise UnsupportedMediaType(
            "Only PDF files are accepted; this file is not a PDF.",
            details={"content_type": getattr(upload, "content_type", "")},
        )

    try:
        pages = get_extractor().page_count(_source(upload))
    except PdfError as exc:
        raise Unprocessable(exc.message, code=exc.code) from exc
    if pages <= 0:
        raise Unprocessable("The PDF has no pages.", code="pdf_invalid")
    if pages > settings.MAX_PDF_PAGES:
        raise Unprocessable(
            f"The PDF has {pages} pages; at most {settings.MAX_PDF_PAGES} are accepted.",
            code="pdf_too_many_pages",
            details={"pages": pages, "max_pages": settings.MAX_PDF_PAGES},
        )
    return CheckedPdf(sha256=digest.hexdigest(), size=int(upload.size), page_count=pages)
