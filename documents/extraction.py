"""PDF inspection and text extraction behind one small interface.

Two implementations: :class:`PypdfExtractor` (pure Python) and :class:`PdfiumExtractor` (PDFium, the
Chrome engine, through pypdfium2: about ten times faster on the benchmark, see ``benchmarks/ingest.py``).
PDFium orders glyphs by position and breaks right-to-left runs apart, so the PDFium extractor hands
pages that are mostly Arabic/Persian/Hebrew to pypdf, which follows the content stream's logical order.
``settings.PDF_EXTRACTOR`` picks one.

Ingestion never calls these in a worker: :mod:`documents.reader` runs them in a sandboxed child
process (memory, CPU and time limits that PDFium cannot escape; see :mod:`documents.sandbox`), through
:meth:`PdfExtractor.read_page`. The in-process guards below remain for other callers (the upload's
page count, tools). Guards against hostile files: pypdf's own decompression limits (``pypdf.Configuration``: 75 MB a
stream), a per-page time budget (``PDF_PAGE_TIMEOUT_SECONDS``, enforced with ``SIGALRM`` where that
is possible, i.e. in a worker's main thread, and always checked after the page), a per-page text cap
(``PDF_MAX_PAGE_CHARS``), and the Celery task time limits above all that. Pages that blow a budget are
skipped and counted, not fatal.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

# pypdf logs a warning for every odd font or broken xref it works around: thousands on real files.
logging.getLogger("pypdf").setLevel(logging.ERROR)

PDF_MAGIC = b"%PDF-"
Source = str | Path | bytes


class PdfError(Exception):
    """A PDF that cannot be used; ``code`` is the envelope's error type."""

    code = "pdf_invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class PdfInvalid(PdfError):
    code = "pdf_invalid"


class PdfEncrypted(PdfError):
    code = "pdf_encrypted"


class PageTimeout(BaseException):
    """A page took longer than its budget (a BaseException so that pypdf's own handlers don't swallow it)."""


@dataclass(frozen=True)
class PageText:
    """The text of one page (1-based ``number``); ``skipped`` when a guard dropped it.

    ``source`` says where the text came from: the PDF's text layer (``text``) or OCR (``ocr``, with
    the recogniser's ``confidence``, 0–1).
    """

    number: int
    text: str
    skipped: bool = False
    source: str = "text"
    confidence: float | None = None


def looks_like_pdf(head: bytes) -> bool:
    """The PDF header must appear within the first 1024 bytes (as readers accept)."""
    return PDF_MAGIC in head[:1024]


# --- text clean-up ----------------------------------------------------------------------------

_RTL_RE = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
_LETTER_RE = re.compile(r"[^\W\d_]")
# Control characters (but tab and newline), lone surrogates, private-use glyphs and non-characters.
_JUNK_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufffe\uffff\U000f0000-\U0010ffff]")
_SPACES_RE = re.compile(r"[^\S\n]+")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


def rtl_share(text: str) -> float:
    """The share of letters that belong to right-to-left scripts (Arabic, Persian, Hebrew...)."""
    rtl = len(_RTL_RE.findall(text))
    if not rtl:
        return 0.0
    return rtl / max(len(_LETTER_RE.findall(text)), rtl)


def clean_text(text: str) -> str:
    """Normalise extracted text for chunking and search.

    NFKC folds Arabic presentation forms (what many PDFs store) back into letters and ligatures such
    as "ﬁ" into "fi"; control characters (NUL is not even storable in PostgreSQL), lone surrogates
    and private-use glyphs are dropped (format characters such as ZWNJ, meaningful in Persian, stay);
    runs of spaces collapse; more than one blank line collapses to one.
    """
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _JUNK_RE.sub("", text)
    text = "\n".join(line.strip() for line in _SPACES_RE.sub(" ", text).split("\n"))
    return _BLANK_LINES_RE.sub("\n\n", text).strip()


# --- guards -----------------------------------------------------------------------------------


def _task_time_limit() -> type[BaseException]:
    """The Celery task's soft time limit, which a page's broad ``except`` must let through.

    Looked up only when an exception is being matched: the sandbox child imports this module for
    every document, and Celery (with Django's settings) would add ~75 ms to its start-up. Celery's
    ``SoftTimeLimitExceeded`` is billiard's class, re-exported.
    """
    from billiard.exceptions import SoftTimeLimitExceeded

    return SoftTimeLimitExceeded


@contextmanager
def page_budget(seconds: float) -> Iterator[None]:
    """Interrupt pure-Python work on a page after ``seconds`` (main thread only; else a no-op here).

    The caller also checks the elapsed time afterwards, which covers C code that a signal cannot
    interrupt (the page is then dropped rather than the next one).
    """
    usable = seconds > 0 and threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise PageTimeout(f"page took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class PdfExtractor(ABC):
    """Inspect a PDF (page count, readable, not locked) and yield its pages' text."""

    name: str = ""

    def __init__(self, *, page_timeout: float | None = None, max_page_chars: int | None = None) -> None:
        if page_timeout is None or max_page_chars is None:
            from django.conf import settings

            page_timeout = settings.PDF_PAGE_TIMEOUT_SECONDS if page_timeout is None else page_timeout
            max_page_chars = settings.PDF_MAX_PAGE_CHARS if max_page_chars is None else max_page_chars
        self.page_timeout = page_timeout
        self.max_page_chars = max_page_chars

    @abstractmethod
    def page_count(self, source: Source) -> int:
        """The number of pages; raises :class:`PdfInvalid` or :class:`PdfEncrypted`."""

    @abstractmethod
    def _open(self, source: Source) -> Any: ...

    @abstractmethod
    def _page_text(self, handle: Any, index: int) -> str: ...

    @abstractmethod
    def _close(self, handle: Any) -> None: ...

    def _len(self, handle: Any) -> int:
        return len(handle)

    def open(self, source: Source) -> Any:
        """Open ``source`` for :meth:`read_page` (close it with :meth:`close`)."""
        return self._open(source)

    def close(self, handle: Any) -> None:
        self._close(handle)

    def count(self, handle: Any) -> int:
        """The number of pages of an open document."""
        return self._len(handle)

    def read_page(self, handle: Any, index: int) -> tuple[str, bool]:
        """Page ``index``'s raw text (at most ``max_page_chars``) and whether it may show images
        (a page without text that shows none is not worth OCR). No guards: the sandbox is the guard."""
        return self._page_text(handle, index)[: self.max_page_chars or None], True

    def pages(self, source: Source) -> Iterator[PageText]:
        """Yield every page's cleaned text in order (guards applied)."""
        handle = self._open(source)
        try:
            for index in range(self._len(handle)):
                yield self._guarded_page(handle, index)
        finally:
            self._close(handle)

    def _guarded_page(self, handle: Any, index: int) -> PageText:
        started = time.monotonic()
        try:
            with page_budget(self.page_timeout):
                raw = self._page_text(handle, index)
        except PageTimeout:
            logger.warning("pdf_page_timeout", extra={"page": index + 1, "extractor": self.name})
            return PageText(index + 1, "", skipped=True)
        except _task_time_limit():
            raise  # the task's time is up (CELERY_TASK_SOFT_TIME_LIMIT): not this page's fault
        except Exception as exc:  # a broken page must not sink the document
            logger.warning(
                "pdf_page_unreadable", extra={"page": index + 1, "extractor": self.name, "error": str(exc)[:200]}
            )
            return PageText(index + 1, "", skipped=True)
        if self.page_timeout > 0 and time.monotonic() - started > self.page_timeout:
            logger.warning("pdf_page_timeout", extra={"page": index + 1, "extractor": self.name})
            return PageText(index + 1, "", skipped=True)
        if len(raw) > self.max_page_chars:
            logger.warning("pdf_page_text_capped", extra={"page": index + 1, "chars": len(raw)})
            raw = raw[: self.max_page_chars]
        return PageText(index + 1, clean_text(raw))


def _as_stream(source: Source) -> IO[bytes] | str:
    import io

    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source)
    return str(source)


class PypdfExtractor(PdfExtractor):
    """pypdf: pure Python, follows the content stream (right for right-to-left scripts), slower."""

    name = "pypdf"

    def _reader(self, source: Source) -> Any:
        import pypdf
        from pypdf.errors import PdfReadError

        try:
            reader = pypdf.PdfReader(_as_stream(source), strict=False)
        except (PdfReadError, ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
            raise PdfInvalid(f"The file is not a readable PDF ({exc}).") from exc
        except OSError as exc:
            raise PdfInvalid(f"The file is not a readable PDF ({exc}).") from exc
        if reader.is_encrypted:
            try:
                unlocked = reader.decrypt("")
            except Exception as exc:  # unsupported algorithm, broken dictionary
                raise PdfEncrypted("The PDF is encrypted and cannot be opened.") from exc
            if not unlocked:
                raise PdfEncrypted("The PDF is protected by a password.")
        return reader

    def page_count(self, source: Source) -> int:
        reader = self._reader(source)
        try:
            return len(reader.pages)
        except Exception as exc:
            raise PdfInvalid(f"The PDF's page tree is broken ({exc}).") from exc

    def _open(self, source: Source) -> Any:
        return self._reader(source)

    def _len(self, handle: Any) -> int:
        return len(handle.pages)

    def _page_text(self, handle: Any, index: int) -> str:
        return handle.pages[index].extract_text() or ""

    def _close(self, handle: Any) -> None:
        stream = getattr(handle, "stream", None)
        if stream is not None and hasattr(stream, "close"):
            stream.close()


# PDFium is not thread-safe: one call at a time per process.
_pdfium_lock = threading.RLock()


class PdfiumExtractor(PdfExtractor):
    """PDFium via pypdfium2: fast; right-to-left pages are re-read with pypdf (see the module doc)."""

    name = "pypdfium2"
    rtl_threshold = 0.3

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fallback: PypdfExtractor | None = None
        self._fallback_handle: Any = None
        self._source: Source | None = None

    def _document(self, source: Source) -> Any:
        import pypdfium2 as pdfium

        with _pdfium_lock:
            try:
                return pdfium.PdfDocument(source if isinstance(source, bytes) else str(source))
            except pdfium.PdfiumError as exc:
                if getattr(exc, "err_code", None) == 4:  # FPDF_ERR_PASSWORD
                    raise PdfEncrypted("The PDF is protected by a password.") from exc
                if getattr(exc, "err_code", None) == 5:  # FPDF_ERR_SECURITY: unsupported handler
                    raise PdfEncrypted("The PDF uses an unsupported encryption.") from exc
                raise PdfInvalid(f"The file is not a readable PDF ({exc}).") from exc

    def page_count(self, source: Source) -> int:
        document = self._document(source)
        try:
            with _pdfium_lock:
                return len(document)
        finally:
            with _pdfium_lock:
                document.close()

    def _open(self, source: Source) -> Any:
        self._source = source
        return self._document(source)

    def _page_text(self, handle: Any, index: int) -> str:
        return self.read_page(handle, index)[0]

    def read_page(self, handle: Any, index: int) -> tuple[str, bool]:
        """The page's text, capped *before* PDFium copies it out, and whether it shows an image."""
        import pypdfium2.raw as pdfium_c

        has_images = False
        with _pdfium_lock:
            page = handle[index]
            try:
                textpage = page.get_textpage()
                try:
                    count = textpage.count_chars()
                    if self.max_page_chars > 0 and count > self.max_page_chars:
                        logger.warning("pdf_page_text_capped", extra={"page": index + 1, "chars": count})
                        count = self.max_page_chars
                    text = textpage.get_text_range(0, count) if count > 0 else ""
                finally:
                    textpage.close()
                if len(text.strip()) < 20:  # only then does it matter (OCR); the walk stops at the first image
                    images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3)
                    has_images = next(iter(images), None) is not None
            finally:
                page.close()
        if rtl_share(text) >= self.rtl_threshold and self._source is not None:
            text = self._rtl_page(index) or text
        return text, has_images

    def _rtl_page(self, index: int) -> str:
        """The page re-read with pypdf, which keeps right-to-left text in logical order."""
        try:
            if self._fallback_handle is None:
                self._fallback = PypdfExtractor(page_timeout=0, max_page_chars=self.max_page_chars)
                self._fallback_handle = self._fallback._open(self._source)  # type: ignore[arg-type]
            return self._fallback._page_text(self._fallback_handle, index)  # type: ignore[union-attr]
        except _task_time_limit():
            raise
        except Exception as exc:
            logger.warning("pdf_rtl_fallback_failed", extra={"page": index + 1, "error": str(exc)[:200]})
            return ""

    def _close(self, handle: Any) -> None:
        with _pdfium_lock:
            handle.close()
        if self._fallback is not None and self._fallback_handle is not None:
            self._fallback._close(self._fallback_handle)
        self._fallback = self._fallback_handle = None
        self._source = None


EXTRACTORS: dict[str, type[PdfExtractor]] = {"pypdf": PypdfExtractor, "pypdfium2": PdfiumExtractor}


def get_extractor(name: str | None = None) -> PdfExtractor:
    """A fresh extractor: ``name`` or ``settings.PDF_EXTRACTOR``."""
    if not name:
        from django.conf import settings

        name = settings.PDF_EXTRACTOR
    try:
        return EXTRACTORS[name]()
    except KeyError:
        raise ValueError(f"Unknown PDF_EXTRACTOR {name!r}; expected one of {sorted(EXTRACTORS)}") from None
