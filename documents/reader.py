"""A PDF's pages, read in sandboxed children: the text layer first, OCR for the pages that have none.

:class:`PageReader` starts the extraction child (:mod:`documents.sandbox`, ``EXTRACT_*`` limits)
and yields its pages in order *as they arrive*, so chunking and embedding overlap with extraction.
A page without a text layer that shows an image is sent to the OCR child (started on the first
such page, ``OCR_*`` limits, its own memory limit because onnxruntime needs far more than PDFium)
and the pages after it wait for its text, so the order never changes. Each page says where its
text came from (``source``: ``text`` or ``ocr``) and, for OCR, how confident the engine was.

Failures are typed :class:`~documents.extraction.PdfError` s: ``pdf_too_complex`` (a child hit a
memory, CPU or time limit or died; the message names the page), ``pdf_too_many_scanned_pages``
(more than ``OCR_MAX_PAGES`` pages need OCR), ``ocr_unavailable``, and the child's own
``pdf_invalid`` / ``pdf_encrypted``. ``checkpoint`` (the task's cancellation check) is called at
least every ``checkpoint_seconds`` while the reader waits; when it raises, both children are
killed at once — cancelling a document stops its parsing within that interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from documents.extraction import PageText, PdfEncrypted, PdfError, PdfInvalid
from documents.sandbox import Child, ChildFailed, Limits, SandboxTimings

logger = logging.getLogger(__name__)

REASONS = {
    "memory": "it needs more memory than allowed",
    "time": "it takes too long to read",
    "cpu": "it takes too much processing time",
    "crashed": "the PDF reader crashed on it",
}


class PdfTooComplex(PdfError):
    """A page that the sandbox gave up on (memory, CPU or time limit, crash): ``page`` names it."""

    code = "pdf_too_complex"

    def __init__(self, *, page: int | None, reason: str, stage: str = "extract", detail: str = "") -> None:
        where = f"Page {page}" if page else "The PDF"
        why = REASONS.get(reason, reason)
        verb = "could not be recognised (OCR)" if stage == "ocr" else "is too complex to process"
        super().__init__(f"{where} {verb}: {why}." + (f" ({detail})" if detail else ""))
        self.page = page
        self.reason = reason
        self.stage = stage

    @property
    def details(self) -> dict[str, Any]:
        return {"page": self.page, "reason": self.reason, "stage": self.stage}


class TooManyScannedPages(PdfError):
    code = "pdf_too_many_scanned_pages"


class OcrUnavailableError(PdfError):
    code = "ocr_unavailable"


@dataclass(frozen=True)
class ReaderConfig:
    """Every knob of the reader, read from settings in one place (:meth:`from_settings`)."""

    extractor: str = "pypdfium2"
    max_page_chars: int = 100_000
    extract_memory_mb: int = 512
    extract_cpu_seconds: int = 300
    page_seconds: float = 10.0
    document_seconds: float = 300.0
    ocr_enabled: bool = True
    ocr_engine: str = "rapidocr"
    ocr_languages: str = "eng"
    ocr_max_pages: int = 100
    ocr_min_confidence: float = 0.6
    ocr_memory_mb: int = 2048
    ocr_page_seconds: float = 60.0
    ocr_document_seconds: float = 1200.0
    ocr_dpi: int = 200
    ocr_max_pixels: int = 12_000_000
    ocr_threads: int = 1
    ocr_min_chars: int = 20

    @classmethod
    def from_settings(cls, **overrides: Any) -> ReaderConfig:
        values = {
            "extractor": settings.PDF_EXTRACTOR,
            "max_page_chars": settings.PDF_MAX_PAGE_CHARS,
            "extract_memory_mb": settings.EXTRACT_MAX_MEMORY_MB,
            "extract_cpu_seconds": settings.EXTRACT_CPU_SECONDS,
            "page_seconds": settings.PDF_PAGE_TIMEOUT_SECONDS,
            "document_seconds": settings.EXTRACT_TIMEOUT_SECONDS,
            "ocr_enabled": settings.OCR_ENABLED,
            "ocr_engine": settings.OCR_ENGINE,
            "ocr_languages": settings.OCR_LANGUAGES,
            "ocr_max_pages": settings.OCR_MAX_PAGES,
            "ocr_min_confidence": settings.OCR_MIN_CONFIDENCE,
            "ocr_memory_mb": settings.OCR_MAX_MEMORY_MB,
            "ocr_page_seconds": settings.OCR_PAGE_TIMEOUT_SECONDS,
            "ocr_document_seconds": settings.OCR_TIMEOUT_SECONDS,
            "ocr_dpi": settings.OCR_DPI,
            "ocr_threads": settings.OCR_THREADS,
        }
        values.update(overrides)
        return cls(**values)

    def extract_limits(self) -> Limits:
        return Limits(self.extract_memory_mb, self.extract_cpu_seconds, self.page_seconds + 2, self.document_seconds)

    def ocr_limits(self) -> Limits:
        return Limits(
            self.ocr_memory_mb,
            int(self.ocr_document_seconds * max(1, self.ocr_threads)),
            self.ocr_page_seconds + 30,  # the child's own watchdog names the page first; this also covers start-up
            self.ocr_document_seconds,
        )


@dataclass
class _ReadState:
    """Where one read stands: pages ready to yield, pages waiting for OCR, what each child said."""

    spawned: float  # when the extraction child was started (its start-up counts as extract time)
    ready: dict[int, PageText] = field(default_factory=dict)
    waiting_ocr: list[int] = field(default_factory=list)  # pages sent to OCR, in order
    next_page: int = 1
    last_extracted: int = 0
    extract_done: bool = False
    ocr_pages: int = 0
    said_done: set[str] = field(default_factory=set)


class PageReader:
    """Iterate a PDF's pages (``PageText``) from the sandboxed children, in page order.

    Use it as a context manager (or call :meth:`close`): leaving early kills the children.
    ``page_count`` is known once the first page (or ``on_open``) has arrived; ``timings`` holds the
    children's seconds and peak RSS when iteration ends.
    """

    def __init__(
        self,
        source: str | bytes,
        config: ReaderConfig | None = None,
        *,
        checkpoint: Callable[[], None] | None = None,
        checkpoint_seconds: float = 1.0,
        on_open: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config or ReaderConfig.from_settings()
        self.checkpoint = checkpoint
        self.checkpoint_seconds = checkpoint_seconds
        self.on_open = on_open
        self.page_count: int | None = None
        self.timings = SandboxTimings()
        self._temp: str | None = None
        if isinstance(source, bytes | bytearray):
            handle, self._temp = tempfile.mkstemp(suffix=".pdf")
            with os.fdopen(handle, "wb") as out:
                out.write(source)
            source = self._temp
        self.path = str(source)
        self._extract: Child | None = None
        self._ocr: Child | None = None
        self._last_check = 0.0
        self._state = _ReadState(spawned=time.monotonic())

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill whatever child still runs, keep its figures, remove the temporary copy."""
        for child, key in ((self._extract, "extract"), (self._ocr, "ocr")):
            if child is not None:
                child.close()
                peak = child.stats.peak_rss_kb
                if key == "extract":
                    self.timings.extract_peak_rss_kb = max(self.timings.extract_peak_rss_kb, peak)
                else:
                    self.timings.ocr_peak_rss_kb = max(self.timings.ocr_peak_rss_kb, peak)
        if self._temp:
            with contextlib.suppress(OSError):
                Path(self._temp).unlink()
            self._temp = None

    def __enter__(self) -> PageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, force: bool = False) -> None:
        if self.checkpoint is None:
            return
        now = time.monotonic()
        if force or now - self._last_check >= self.checkpoint_seconds:
            self._last_check = now
            self.checkpoint()

    # --- reading --------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[PageText]:
        try:
            yield from self._pages()
        finally:
            self.close()

    def _start_ocr(self) -> Child:
        config = self.config
        started = time.monotonic()
        child = Child(
            "ocr",
            {
                "path": self.path,
                "engine": config.ocr_engine,
                "languages": config.ocr_languages,
                "dpi": config.ocr_dpi,
                "max_pixels": config.ocr_max_pixels,
                "min_confidence": config.ocr_min_confidence,
                "page_seconds": config.ocr_page_seconds,
                "threads": config.ocr_threads,
            },
            config.ocr_limits(),
        )
        self.timings.extra["ocr_started"] = started
        return child

    def _start_extract(self) -> Child:
        config = self.config
        return Child(
            "extract",
            {
                "path": self.path,
                "extractor": config.extractor,
                "max_page_chars": config.max_page_chars,
                "page_seconds": config.page_seconds,
                "ocr_min_chars": config.ocr_min_chars if config.ocr_enabled else -1,
            },
            config.extract_limits(),
        )

    def _pages(self) -> Iterator[PageText]:
        state = self._state = _ReadState(spawned=time.monotonic())
        self._extract = extract = self._start_extract()
        while True:
            while state.next_page in state.ready:
                yield state.ready.pop(state.next_page)
                state.next_page += 1
            if state.extract_done and not state.waiting_ocr:
                break
            self._check()
            active = [c for c in (extract, self._ocr) if c is not None and not c.finished]
            if not active:
                raise PdfTooComplex(page=None, reason="crashed", detail="the reader ended early")
            wait = 0.05 if len(active) > 1 else min(0.5, self.checkpoint_seconds)
            for child in active:
                self._serve(child, wait)

    def _serve(self, child: Child, wait: float) -> None:
        """Handle what ``child`` sent within ``wait`` seconds; raise if it died with work left."""
        state = self._state
        is_ocr = child is self._ocr
        current = state.waiting_ocr[0] if is_ocr and state.waiting_ocr else state.last_extracted + 1
        try:
            messages = child.receive(wait)
        except ChildFailed as exc:
            raise PdfTooComplex(page=current, reason=exc.reason, stage=child.mode) from exc
        for message in messages:
            self._handle(child, message, is_ocr=is_ocr)
        if not child.finished or child.mode in state.said_done:
            return
        if child.crashed():
            raise PdfTooComplex(page=current, reason=child.death_reason(), stage=child.mode)
        if not is_ocr and not state.extract_done:
            raise PdfTooComplex(page=current, reason="crashed", stage="extract")
        if is_ocr and state.waiting_ocr:
            raise PdfTooComplex(page=current, reason="crashed", stage="ocr")

    def _handle(self, child: Child, message: dict[str, Any], *, is_ocr: bool) -> None:
        """One message of a child (see :mod:`documents.pdf_child` for what each kind carries)."""
        state = self._state
        kind = message.get("t")
        if kind == "too_complex":
            child.kill()
            raise PdfTooComplex(
                page=message.get("page") or None, reason=message.get("reason", "crashed"), stage=child.mode
            )
        if kind == "error":
            raise _child_error(message)
        if kind == "open":
            self.page_count = int(message["pages"])
            self.timings.extract_seconds += time.monotonic() - state.spawned
            if self.on_open is not None:
                self.on_open(self.page_count)
        elif kind == "ready":
            self.timings.ocr_seconds += float(message.get("s", 0.0))
        elif kind == "done":
            state.said_done.add(child.mode)
            if not is_ocr:
                state.extract_done = True
                if self._ocr is not None:
                    self._ocr.send({"end": True})
        elif kind == "page" and not is_ocr:
            self._extracted_page(message)
        elif kind == "page":
            self._recognised_page(message)

    def _extracted_page(self, message: dict[str, Any]) -> None:
        """A page from the extraction child: ready, or sent to OCR when it has no text layer."""
        config, state = self.config, self._state
        number = int(message["n"])
        state.last_extracted = number
        self.timings.extract_seconds += float(message.get("s", 0.0))
        if not (message.get("ocr") and config.ocr_enabled):
            state.ready[number] = PageText(number, message.get("text", ""), bool(message.get("skipped")))
            return
        state.ocr_pages += 1
        if state.ocr_pages > config.ocr_max_pages:
            raise TooManyScannedPages(
                f"More than {config.ocr_max_pages} pages need OCR (they have no text layer); "
                f"at most {config.ocr_max_pages} are read by OCR per document."
            )
        if self._ocr is None:
            self._ocr = self._start_ocr()
        self._ocr.send({"page": number})
        state.waiting_ocr.append(number)

    def _recognised_page(self, message: dict[str, Any]) -> None:
        """A page from the OCR child, with the engine's confidence."""
        state = self._state
        number = int(message["n"])
        with contextlib.suppress(ValueError):
            state.waiting_ocr.remove(number)
        self.timings.ocr_seconds += float(message.get("s", 0.0))
        self.timings.ocr_pages += 1
        confidence = message.get("confidence")
        state.ready[number] = PageText(
            number,
            message.get("text", ""),
            source="ocr",
            confidence=round(float(confidence), 4) if confidence is not None else None,
        )


def _child_error(message: dict[str, Any]) -> PdfError:
    """The typed error a child reported (``pdf_encrypted``, ``ocr_unavailable``, else ``pdf_invalid``)."""
    code, text = message.get("code"), message.get("message", "")
    if code == "pdf_encrypted":
        return PdfEncrypted(text)
    if code == "ocr_unavailable":
        return OcrUnavailableError(text)
    return PdfInvalid(text)


def read_pages(source: str | bytes, **kwargs: Any) -> list[PageText]:
    """Every page at once (tests, the ``ingest`` command's dry runs)."""
    with PageReader(source, **kwargs) as reader:
        return list(reader)
