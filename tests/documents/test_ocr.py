"""OCR engines: line grouping and the confidence threshold, and which engine reads which language.

rapidocr-onnxruntime (the default, in the requirements) reads English; Tesseract, where the host has
it with its language packs, reads German, Persian and Arabic (the ``tesseract`` service marker of
tests/services.py: skipped with the reason where it is missing, a failure under ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from documents.ocr import OcrLine, group_lines, keep_confident, parse_tesseract_tsv
from documents.reader import OcrUnavailableError, ReaderConfig, read_pages
from tests.documents import hostile
from tests.documents.pdfs import ARABIC_SENTENCE, PERSIAN_SENTENCE, make_persian_pdf
from tests.services import TESSERACT_LANGUAGES, tesseract_missing

pytestmark = pytest.mark.timeout(120)


def test_boxes_on_one_line_are_joined_left_to_right_and_lines_top_to_bottom() -> None:
    boxes = [
        OcrLine("world", 0.9, top=10, left=200, height=20),
        OcrLine("second line", 0.8, top=50, left=10, height=20),
        OcrLine("hello", 0.95, top=12, left=10, height=20),
    ]
    lines = group_lines(boxes)
    assert [line.text for line in lines] == ["hello world", "second line"]


def test_lines_under_the_threshold_are_dropped_and_the_rest_give_the_confidence() -> None:
    page = keep_confident([OcrLine("good text", 0.9), OcrLine("noise", 0.3), OcrLine("fine", 0.8)], 0.7)
    assert page.text == "good text\nfine"
    assert page.dropped_lines == 1
    assert page.confidence == pytest.approx((0.9 * 9 + 0.8 * 4) / 13)
    assert keep_confident([OcrLine("noise", 0.2)], 0.7) == type(page)("", None, 1)


def test_tesseract_tsv_words_become_lines_with_their_confidence() -> None:
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "4\t1\t1\t1\t1\t0\t10\t10\t100\t20\t-1\t\n"
        "5\t1\t1\t1\t1\t1\t10\t10\t40\t20\t96.5\tGrüße\n"
        "5\t1\t1\t1\t1\t2\t60\t10\t40\t20\t90\taus\n"
        "5\t1\t1\t1\t2\t1\t10\t40\t40\t20\t50\tMünchen\n"
    )
    lines = parse_tesseract_tsv(tsv)
    assert [(line.text, round(line.confidence, 3)) for line in lines] == [
        ("Grüße aus", round((0.965 * 5 + 0.9 * 3) / 8, 3)),
        ("München", 0.5),
    ]


def test_an_engine_that_is_not_installed_is_a_typed_failure() -> None:
    with pytest.raises(OcrUnavailableError) as failed:
        read_pages(hostile.ccitt_scan([["text"]]), config=ReaderConfig(ocr_engine="nonexistent"))
    assert failed.value.code == "ocr_unavailable"


@pytest.mark.slow
@pytest.mark.tesseract
def test_tesseract_reads_german_with_its_umlauts() -> None:
    data = hostile.ccitt_scan([["Herzliche Grüße aus München.", "Die Straße ist gesperrt."]])
    pages = read_pages(data, config=ReaderConfig(ocr_engine="tesseract", ocr_languages="deu"))
    assert "Grüße" in pages[0].text and "München" in pages[0].text
    assert pages[0].source == "ocr" and pages[0].confidence > 0.8


@pytest.mark.slow
@pytest.mark.tesseract
def test_tesseract_reads_a_persian_scan() -> None:
    data = hostile.scanned_copy(make_persian_pdf([PERSIAN_SENTENCE]), dpi=250)
    pages = read_pages(data, config=ReaderConfig(ocr_engine="tesseract", ocr_languages="fas", ocr_dpi=250))
    words = PERSIAN_SENTENCE.rstrip(".").split()
    found = [word for word in words if word in pages[0].text]
    assert len(found) >= len(words) * 0.6, (pages[0].text, found)


@pytest.mark.slow
@pytest.mark.tesseract
def test_tesseract_reads_an_arabic_scan() -> None:
    data = hostile.scanned_copy(make_persian_pdf([ARABIC_SENTENCE], language="ara"), dpi=250)
    pages = read_pages(data, config=ReaderConfig(ocr_engine="tesseract", ocr_languages="ara", ocr_dpi=250))
    words = ARABIC_SENTENCE.rstrip(".").split()
    found = [word for word in words if word in pages[0].text]
    assert len(found) >= len(words) * 0.6, (pages[0].text, found)
    assert pages[0].source == "ocr" and pages[0].confidence > 0.6


def test_system_check_refuses_an_unknown_engine_and_warns_about_a_missing_one(settings: Any) -> None:
    from documents.checks import ocr_settings_check

    settings.OCR_ENGINE = "abbyy"
    assert [m.id for m in ocr_settings_check()] == ["documents.E005"]
    settings.OCR_ENGINE = "rapidocr"
    assert ocr_settings_check() == []  # installed by the requirements
    settings.OCR_ENGINE = "tesseract"
    expected = [] if shutil.which("tesseract") else ["documents.W001"]
    assert [m.id for m in ocr_settings_check()] == expected


def test_the_tesseract_tests_fail_under_ci_where_tesseract_is_missing(tmp_path: Path) -> None:
    """They carry the ``tesseract`` service marker: no silent skip in CI (issue 17)."""
    env = {**os.environ, "CI": "true", "PATH": str(tmp_path)}  # no tesseract on it
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "tesseract_reads"],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:]
    assert "3 errors" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]
    assert done.stdout.count("CI=true and a service this test needs is missing. tesseract not available") >= 3


def test_a_tesseract_without_a_language_pack_the_tests_read_is_missing(tmp_path: Path, monkeypatch: Any) -> None:
    fake = tmp_path / "tesseract"
    fake.write_text("#!/bin/sh\nprintf 'List of available languages in \"/x/\" (3):\\neng\\ndeu\\nosd\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert set(TESSERACT_LANGUAGES) == {"eng", "deu", "fas", "ara"}
    assert tesseract_missing() == (
        "tesseract is missing the language packs fas, ara (apt install tesseract-ocr-fas tesseract-ocr-ara)"
    )
