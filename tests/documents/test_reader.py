"""Reading hostile and scanned PDFs through the sandboxed children (:mod:`documents.reader`).

Bombs end ``pdf_too_complex`` naming the page, in bounded time, with no child over its limit and
this process's memory flat; scans are read by OCR (rapidocr-onnxruntime) with their confidence;
a photo gives no text; ``OCR_MAX_PAGES`` is a typed failure; a cancel kills the children at once.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import psutil
import pytest

from documents.extraction import PageText, PdfEncrypted, PdfInvalid
from documents.reader import PageReader, PdfTooComplex, ReaderConfig, TooManyScannedPages, read_pages
from tests.documents import hostile
from tests.documents.pdfs import encrypt_pdf, make_pdf

pytestmark = pytest.mark.timeout(120)

CONFIG = ReaderConfig(extract_memory_mb=512, page_seconds=10, document_seconds=60)
SCAN_LINES = ["The zeppelin maintenance budget was approved.", "Invoices are paid within thirty days."]


def own_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1024 / 1024


def test_text_pages_stream_in_order_with_their_source() -> None:
    pages = read_pages(make_pdf(["alpha page", "beta page", "gamma page"]), config=CONFIG)
    assert [(p.number, p.text, p.source, p.confidence) for p in pages] == [
        (1, "alpha page", "text", None),
        (2, "beta page", "text", None),
        (3, "gamma page", "text", None),
    ]


def test_the_first_page_is_yielded_while_the_child_still_extracts() -> None:
    """Pages stream: 40 pages of ~60,000 characters are more than the pipe holds, so the child cannot
    have written them all (nor its ``done``) when the first page reaches the consumer. A reader that
    gathered every page before yielding would have seen ``done`` and reaped the child by then."""
    with PageReader(hostile.wordy_pages(pages=40), CONFIG) as reader:
        pages = iter(reader)
        first = next(pages)
        assert first.number == 1 and len(first.text) > 50_000
        child = reader._extract
        assert child is not None and not child.finished and child.stats.returncode is None
        assert not reader._state.extract_done  # its "done" message has not arrived
        assert psutil.Process(child.process.pid).status() != psutil.STATUS_ZOMBIE  # still running
        rest = [page.number for page in pages]
    assert rest == list(range(2, 41)) and reader._state.extract_done


def test_broken_and_encrypted_files_keep_their_typed_errors() -> None:
    with pytest.raises(PdfInvalid):
        read_pages(b"%PDF-1.7\nthis is not a pdf at all", config=CONFIG)
    with pytest.raises(PdfEncrypted):
        read_pages(encrypt_pdf(make_pdf(["secret"]), user_password="pw"), config=CONFIG)


@pytest.mark.parametrize(
    ("make", "page"),
    [
        (lambda: hostile.shared_stream_bomb(pages=3), 1),
        (lambda: hostile.shared_stream_bomb(pages=200), 1),
        (hostile.million_glyph_page, 1),
    ],
    ids=["shared-stream-3-pages", "shared-stream-200-pages", "million-glyphs"],
)
def test_bombs_fail_fast_naming_the_page_with_every_process_within_its_limit(make: Any, page: int) -> None:
    data = make()
    assert len(data) < 120_000  # small files: the damage is all in what they expand to
    rss_before = own_rss_mb()
    started = time.monotonic()
    with PageReader(data, CONFIG) as reader, pytest.raises(PdfTooComplex) as failed:
        list(reader)
    seconds = time.monotonic() - started
    assert failed.value.code == "pdf_too_complex"
    assert failed.value.page == page and f"Page {page}" in failed.value.message
    assert failed.value.reason in {"memory", "time"}
    assert seconds < 15
    assert 0 < reader.timings.extract_peak_rss_kb <= 512 * 1024
    assert own_rss_mb() - rss_before < 50  # the worker's own memory stays flat


def test_the_page_time_limit_names_the_page() -> None:
    config = ReaderConfig(extract_memory_mb=2048, page_seconds=0.5, document_seconds=60)
    with pytest.raises(PdfTooComplex) as failed:
        read_pages(hostile.shared_stream_bomb(pages=2, megabytes=8), config=config)
    assert (failed.value.page, failed.value.reason) == (1, "time")


def test_a_looping_page_tree_ends_in_bounded_time() -> None:
    started = time.monotonic()
    try:
        pages = read_pages(hostile.looping_page_tree(), config=CONFIG)
    except PdfInvalid:
        pages = []
    assert time.monotonic() - started < 10
    assert len(pages) <= 3


@pytest.mark.parametrize("ocr_memory_mb", [2048, 1024])
def test_a_decompression_bomb_image_is_bounded_in_the_ocr_child(ocr_memory_mb: int) -> None:
    """A few KB of Flate claiming a 40000x40000 greyscale image (1.6 GB decoded) on a page with no text.

    Measured: PDFium does not fail the render when it cannot allocate the picture, it leaves it out;
    so the OCR child either decodes it within its address-space limit (2048 MB: peak ~1.7 GB) or, under
    a smaller one (1024 MB), draws the page without it — either way the page is read by OCR, found
    empty, and no process goes over its limit. (As a document, it ends ``pdf_no_text``.)"""
    config = ReaderConfig(page_seconds=10, ocr_page_seconds=60, ocr_memory_mb=ocr_memory_mb)
    rss_before = own_rss_mb()
    started = time.monotonic()
    with PageReader(hostile.image_bomb(), config) as reader:
        pages = list(reader)
    assert time.monotonic() - started < 60
    assert pages == [PageText(1, "", source="ocr", confidence=None)]
    assert reader.timings.ocr_pages == 1  # OCR ran on it
    assert 100 * 1024 < reader.timings.ocr_peak_rss_kb <= ocr_memory_mb * 1024
    assert 0 < reader.timings.extract_peak_rss_kb <= config.extract_memory_mb * 1024
    assert own_rss_mb() - rss_before < 50


@pytest.mark.slow
def test_a_ccitt_g4_scan_is_read_by_ocr_with_its_confidence() -> None:
    data = hostile.ccitt_scan([SCAN_LINES, ["Page two of the scan mentions lighthouses."]])
    with PageReader(data, ReaderConfig()) as reader:
        pages = list(reader)
    assert [p.source for p in pages] == ["ocr", "ocr"]
    assert "zeppelin maintenance budget" in pages[0].text and "thirty days" in pages[0].text
    assert "lighthouses" in pages[1].text
    assert all(p.confidence is not None and p.confidence > 0.8 for p in pages)
    assert reader.timings.ocr_pages == 2 and reader.timings.ocr_seconds > 0
    assert 0 < reader.timings.ocr_peak_rss_kb <= 2048 * 1024


@pytest.mark.slow
def test_a_mixed_pdf_gets_both_sources_in_page_order() -> None:
    pages = read_pages(hostile.mixed_pdf(["A text layer page about harbours."], SCAN_LINES), config=ReaderConfig())
    assert [(p.number, p.source) for p in pages] == [(1, "text"), (2, "ocr")]
    assert pages[0].confidence is None and pages[1].confidence > 0.8
    assert "zeppelin" in pages[1].text


@pytest.mark.slow
def test_a_photo_yields_no_text() -> None:
    pages = read_pages(hostile.photo_pdf(), config=ReaderConfig())
    assert [(p.source, p.text) for p in pages] == [("ocr", "")]


def test_more_scanned_pages_than_ocr_max_pages_is_a_typed_failure() -> None:
    data = hostile.ccitt_scan([["one"], ["two"], ["three"]])
    with pytest.raises(TooManyScannedPages) as failed:
        read_pages(data, config=ReaderConfig(ocr_max_pages=2))
    assert failed.value.code == "pdf_too_many_scanned_pages"


def test_ocr_disabled_leaves_scanned_pages_empty() -> None:
    pages = read_pages(hostile.ccitt_scan([SCAN_LINES]), config=ReaderConfig(ocr_enabled=False))
    assert [(p.source, p.text) for p in pages] == [("text", "")]


class Cancelled(Exception):
    pass


def test_a_cancel_kills_the_ocr_child_within_a_second() -> None:
    """The checkpoint raising (a cancelled task) while OCR runs: both children are gone at once."""
    cancel_at: list[float] = []

    def checkpoint() -> None:
        if cancel_at and time.monotonic() >= cancel_at[0]:
            raise Cancelled

    data = hostile.ccitt_scan([SCAN_LINES] * 3)
    reader = PageReader(data, ReaderConfig(), checkpoint=checkpoint, checkpoint_seconds=0.2)
    iterator = iter(reader)
    started = time.monotonic()
    cancel_at.append(started + 1.0)  # OCR is under way by then (start-up and the first page take longer)
    with pytest.raises(Cancelled):
        next(iterator)
    assert time.monotonic() - started < 2.5
    assert reader._ocr is not None and reader._ocr.stats.returncode is not None  # killed and reaped
    children = psutil.Process().children(recursive=True)
    assert not [c for c in children if "documents.pdf_child" in " ".join(c.cmdline())]


def test_peak_memory_of_children_is_not_charged_to_this_process() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PdfTooComplex):
        read_pages(hostile.shared_stream_bomb(pages=3), config=CONFIG)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
