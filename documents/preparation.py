"""Read, chunk and embed one PDF, segment by segment, while its pages are still being read.

:func:`read_chunk_embed` is the middle of the ingestion pipeline (:mod:`documents.ingestion` runs it
and stores what it returns). The sandboxed children (:class:`documents.reader.PageReader`) stream
pages back in order; every ``SEGMENT_CHARS`` of text is chunked (:func:`documents.chunking.chunk_pages`)
and embedded while the children go on reading. A chunk never spans two segments, and within a segment
chunking is exactly that of the whole text: the segment's chunks are renumbered and their character
offsets moved to the document's text (pages joined by ``PAGE_SEPARATOR``). Progress runs 5–90 by
pages read (stages ``extracting``, ``ocr``, ``chunking``, ``embedding``), throttled to one report
every half second or change of stage; the seconds go to the :class:`StageClock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from django.conf import settings

from documents.chunking import PAGE_SEPARATOR, ChunkData, chunk_pages, join_pages
from documents.embedding_base import Embedder
from documents.extraction import PageText
from documents.ingestion_progress import StageClock
from documents.reader import PageReader, ReaderConfig
from documents.sandbox import SandboxTimings

# Pages are chunked and embedded in segments of about this many characters while the children go on
# reading (~25k tokens, ~60 chunks of 400: still one embedding request each). A chunk never spans
# two segments; within a segment chunking is exactly that of the whole text.
SEGMENT_CHARS = 100_000


@dataclass
class Prepared:
    """What reading, chunking and embedding produced, ready to store."""

    pages: list[PageText]
    chunks: list[ChunkData]
    vectors: list[list[float]]
    tokens: int
    reader: SandboxTimings


class _Throttle:
    """Progress reports at most every ``interval`` seconds (and at every change of stage): each one
    is a write and an event, and a 500-page document does not need 500 of them."""

    def __init__(self, progress: Callable[[int, str], None], interval: float = 0.5) -> None:
        self.progress = progress
        self.interval = interval
        self.last_at = 0.0
        self.last_stage = ""

    def __call__(self, value: int, stage: str) -> None:
        now = time.monotonic()
        if stage != self.last_stage or now - self.last_at >= self.interval:
            self.last_at, self.last_stage = now, stage
            self.progress(value, stage)


class _Segments:
    """The pages read so far, and the chunks and vectors of the segments already flushed."""

    def __init__(self, embedder: Embedder, progress: Callable[[int, str], None], clock: StageClock) -> None:
        self.embedder = embedder
        self.clock = clock
        self.throttled = _Throttle(progress)
        self.total = 0  # the page count, once the reader knows it
        self.pages: list[PageText] = []
        self.chunks: list[ChunkData] = []
        self.vectors: list[list[float]] = []
        self.tokens = 0
        self.segment: list[PageText] = []
        self.segment_chars = 0
        self.offset = 0  # where the segment starts in the document's text (pages joined by PAGE_SEPARATOR)

    def done(self) -> int:
        """Progress by pages read: 5–90."""
        return 5 + int(85 * len(self.pages) / max(self.total, 1))

    def add(self, page: PageText) -> None:
        """One more page; flushes the segment once it holds ``SEGMENT_CHARS`` of text."""
        self.pages.append(page)
        self.throttled(self.done(), "ocr" if page.source == "ocr" else "extracting")
        if page.text:
            self.segment.append(page)
            self.segment_chars += len(page.text)
            if self.segment_chars >= SEGMENT_CHARS:
                self.flush()

    def flush(self) -> None:
        """Chunk the segment and embed its chunks."""
        if not self.segment:
            return
        done = self.done()
        self.throttled(done, "chunking")
        with self.clock.measure("chunk"):
            found = self._chunk(self.segment)
        self.segment, self.segment_chars = [], 0
        if not found:
            return
        self.throttled(done, "embedding")
        with self.clock.measure("embed"):
            result = self.embedder.embed([c.text for c in found])
        self.vectors.extend(result.vectors)
        self.tokens += result.tokens

    def _chunk(self, segment: list[PageText]) -> list[ChunkData]:
        """The segment's chunks, appended with their index and offsets in the whole document."""
        found = chunk_pages(segment, chunk_tokens=settings.CHUNK_TOKENS, overlap=settings.CHUNK_OVERLAP)
        base, offset = len(self.chunks), self.offset
        self.chunks.extend(
            replace(c, index=base + c.index, char_start=c.char_start + offset, char_end=c.char_end + offset)
            for c in found
        )
        self.offset += len(join_pages(segment)[0]) + len(PAGE_SEPARATOR)
        return found


def read_chunk_embed(
    source: str | bytes,
    *,
    embedder: Embedder,
    progress: Callable[[int, str], None],
    checkpoint: Callable[[], None],
    clock: StageClock,
    config: ReaderConfig | None = None,
) -> Prepared:
    """Read the pages in the sandbox (:class:`documents.reader.PageReader`) and, as they arrive,
    chunk and embed them segment by segment (progress 5–90, stage ``extracting``/``ocr``/``embedding``)."""
    segments = _Segments(embedder, progress, clock)

    def opened(count: int) -> None:
        segments.total = count
        progress(5, "extracting")

    with PageReader(source, config, checkpoint=checkpoint, on_open=opened) as reader:
        for page in reader:
            segments.add(page)
        segments.flush()
    clock.add("extract", reader.timings.extract_seconds)
    clock.add("ocr", reader.timings.ocr_seconds)
    return Prepared(segments.pages, segments.chunks, segments.vectors, segments.tokens, reader.timings)


def page_sources(pages: Sequence[PageText]) -> dict[int, float | None]:
    """The pages whose text came from OCR, with the OCR confidence (None: OCR found nothing)."""
    return {page.number: page.confidence for page in pages if page.source == "ocr"}
