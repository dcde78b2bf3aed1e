"""OCR engines for scanned pages; they run inside the OCR child (:mod:`documents.pdf_child`), never in a worker.

Which engine reads what (``OCR_ENGINE``):

* ``rapidocr`` (default): ``rapidocr-onnxruntime`` 1.4.4, PaddleOCR's PP-OCRv4 models on
  onnxruntime, shipped inside the wheel (nothing is downloaded). It reads **English and Chinese
  only**: other Latin-script languages lose their accented letters ("Grüße" comes back as "Gre"),
  and Arabic, Persian, Hebrew or Cyrillic scans give nothing useful. onnxruntime needs about 1.5 GB
  of address space (it cannot even import under 512 MB), hence ``OCR_MAX_MEMORY_MB`` (2048).
  Installed with ``--no-deps`` (its metadata asks for ``opencv-python``, which needs ``libGL.so.1``;
  ``requirements/base.txt`` pins ``opencv-python-headless`` and the rest of its dependencies).
* ``tesseract``: the ``tesseract`` program where the host has it (Debian: ``tesseract-ocr`` and a
  ``tesseract-ocr-<lang>`` pack per language, e.g. ``-deu``, ``-fas``, ``-ara``), run as a process
  with TSV output; ``OCR_LANGUAGES`` (Tesseract's codes joined with ``+``, default ``eng``) says
  which packs to use. Use it for German, French, Persian, Arabic and the other languages Tesseract has.

Both return the page's lines in reading order (top to bottom, left to right; Tesseract follows its
own layout analysis) with a confidence per line (0–1). Lines under ``OCR_MIN_CONFIDENCE`` are
dropped; what is left gives the page's confidence (weighted by characters). A photo therefore
usually yields no text at all and its document ends ``pdf_no_text``.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ENGINES = ("rapidocr", "tesseract")


class OcrUnavailable(Exception):
    """The configured engine is not installed here."""


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    top: float = 0.0
    left: float = 0.0
    height: float = 0.0


@dataclass(frozen=True)
class OcrPage:
    """The text kept on a page, its confidence, and how many lines were dropped for low confidence."""

    text: str
    confidence: float | None
    dropped_lines: int


def keep_confident(lines: Sequence[OcrLine], min_confidence: float) -> OcrPage:
    """Drop the lines under ``min_confidence``; the page's confidence is the kept lines' mean, by characters."""
    kept = [line for line in lines if line.text.strip() and line.confidence >= min_confidence]
    weight = sum(len(line.text) for line in kept)
    confidence = sum(line.confidence * len(line.text) for line in kept) / weight if weight else None
    return OcrPage("\n".join(line.text.strip() for line in kept), confidence, len(lines) - len(kept))


def group_lines(boxes: Sequence[OcrLine]) -> list[OcrLine]:
    """Boxes on the same text line (their vertical centres within one box height) joined left to right."""
    rows: list[list[OcrLine]] = []
    for box in sorted(boxes, key=lambda b: (b.top, b.left)):
        centre = box.top + box.height / 2
        row = rows[-1] if rows else None
        if row is not None:
            top = min(b.top for b in row)
            bottom = max(b.top + b.height for b in row)
            if top <= centre <= bottom:
                row.append(box)
                continue
        rows.append([box])
    lines = []
    for row in rows:
        row.sort(key=lambda b: b.left)
        weight = sum(len(b.text) for b in row) or 1
        lines.append(
            OcrLine(
                text=" ".join(b.text.strip() for b in row),
                confidence=sum(b.confidence * len(b.text) for b in row) / weight,
                top=min(b.top for b in row),
                left=row[0].left,
                height=max(b.top + b.height for b in row) - min(b.top for b in row),
            )
        )
    return lines


class OcrEngine(ABC):
    """Recognise the text lines of one page image (a greyscale ``PIL.Image``)."""

    name = ""

    @abstractmethod
    def lines(self, image: Any) -> list[OcrLine]: ...


class RapidOcrEngine(OcrEngine):
    """rapidocr-onnxruntime (English and Chinese; see the module docstring)."""

    name = "rapidocr"

    def __init__(self, *, threads: int = 1) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # pragma: no cover - installed by the requirements
            raise OcrUnavailable(f"rapidocr-onnxruntime is not installed ({exc}).") from exc
        self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)

    def lines(self, image: Any) -> list[OcrLine]:
        import numpy as np

        result, _ = self._ocr(np.asarray(image))
        boxes = []
        for points, text, score in result or []:
            ys = [p[1] for p in points]
            xs = [p[0] for p in points]
            boxes.append(
                OcrLine(str(text), float(score), top=min(ys), left=min(xs), height=max(ys) - min(ys)),
            )
        return group_lines(boxes)


class TesseractEngine(OcrEngine):
    """The ``tesseract`` program (TSV output: word confidences, block/paragraph/line numbers)."""

    name = "tesseract"

    def __init__(self, *, languages: str = "eng", threads: int = 1, timeout: float = 120.0) -> None:
        self.binary = shutil.which("tesseract")
        if not self.binary:
            raise OcrUnavailable("OCR_ENGINE=tesseract but no tesseract program is installed.")
        self.languages = languages or "eng"
        self.threads = threads
        self.timeout = timeout

    def lines(self, image: Any) -> list[OcrLine]:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        completed = subprocess.run(
            [self.binary, "stdin", "stdout", "-l", self.languages, "--psm", "3", "tsv"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=self.timeout,
            check=False,
            env={"OMP_THREAD_LIMIT": str(self.threads), "PATH": "/usr/bin:/bin"},
        )
        if completed.returncode != 0:
            raise RuntimeError(f"tesseract failed: {completed.stderr.decode(errors='replace')[-500:]}")
        return parse_tesseract_tsv(completed.stdout.decode("utf-8", errors="replace"))


def parse_tesseract_tsv(tsv: str) -> list[OcrLine]:
    """Words of Tesseract's TSV grouped into its lines (in its order), confidence 0–1 per line."""
    lines: dict[tuple[int, int, int, int], list[tuple[str, float, int, int, int]]] = {}
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        try:
            if row["level"] != "5" or not (row.get("text") or "").strip():
                continue
            key = (int(row["page_num"]), int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
            conf = max(0.0, float(row["conf"])) / 100
            lines.setdefault(key, []).append((row["text"], conf, int(row["top"]), int(row["left"]), int(row["height"])))
        except (KeyError, TypeError, ValueError):
            continue
    result = []
    for words in lines.values():
        weight = sum(len(w[0]) for w in words) or 1
        result.append(
            OcrLine(
                " ".join(w[0] for w in words),
                sum(w[1] * len(w[0]) for w in words) / weight,
                top=min(w[2] for w in words),
                left=min(w[3] for w in words),
                height=max(w[4] for w in words),
            )
        )
    return result


def get_engine(name: str, *, languages: str = "eng", threads: int = 1) -> OcrEngine:
    """The engine called ``name`` (raises :class:`OcrUnavailable` when it is not installed)."""
    if name == "rapidocr":
        return RapidOcrEngine(threads=threads)
    if name == "tesseract":
        return TesseractEngine(languages=languages, threads=threads)
    raise OcrUnavailable(f"Unknown OCR_ENGINE {name!r}; expected one of {', '.join(ENGINES)}.")


def engine_installed(name: str) -> bool:
    """Whether ``name`` can run here (without loading its models)."""
    if name == "tesseract":
        return shutil.which("tesseract") is not None
    if name == "rapidocr":
        import importlib.util

        return importlib.util.find_spec("rapidocr_onnxruntime") is not None
    return False
