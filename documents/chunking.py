"""Token windows over a document's text, each keeping its page range and character offsets.

The pages' texts are joined with a blank line into one string; tiktoken (loaded offline by
:mod:`documents.tokenizer`) encodes it once and :meth:`tiktoken.Encoding.decode_with_offsets` maps
tokens back to characters. A window is ``CHUNK_TOKENS`` tokens; the next one starts ``CHUNK_OVERLAP``
tokens before the previous end. A window ends early (in its last quarter) after a paragraph or
sentence end when there is one, so chunks rarely cut a sentence. Chunk text is sliced from the
string by character offsets, so a token boundary inside a multi-byte character (common in Persian)
never produces a broken character. A chunk keeps the offsets (into its own text) at which each later
page begins (``page_breaks``), so that a citation of part of a chunk names that part's pages.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from documents.extraction import PageText
from documents.tokenizer import get_encoding

PAGE_SEPARATOR = "\n\n"
_SENTENCE_ENDS = (b".", b"!", b"?", "؟".encode(), "۔".encode(), b".\n")


@dataclass(frozen=True)
class ChunkData:
    index: int
    text: str
    page_start: int
    page_end: int
    token_count: int
    char_start: int
    char_end: int
    page_breaks: tuple[tuple[int, int], ...] = ()  # (offset in text, page) of each page starting inside


def join_pages(pages: Sequence[PageText]) -> tuple[str, list[int], list[int]]:
    """The document text, and for each page with text its start offset and page number."""
    parts: list[str] = []
    starts: list[int] = []
    numbers: list[int] = []
    offset = 0
    for page in pages:
        if not page.text:
            continue
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        starts.append(offset)
        numbers.append(page.number)
        parts.append(page.text)
        offset += len(page.text)
    return "".join(parts), starts, numbers


def token_offsets(encoding: Any, tokens: Sequence[int]) -> list[int]:
    """The character offset where each token starts: ``encoding.decode_with_offsets(tokens)[1]``,
    without decoding the text again and counting ASCII tokens by their length (the same numbers,
    several times faster on Latin text; tiktoken's loop costs a generator per token)."""
    offsets: list[int] = []
    append = offsets.append
    position = 0
    for token in encoding.decode_tokens_bytes(tokens):
        if token.isascii():
            append(position)
            position += len(token)
        else:  # a token may start or end inside a multi-byte character (UTF-8 continuation bytes)
            append(max(0, position - (0x80 <= token[0] < 0xC0)))
            position += sum(1 for byte in token if not 0x80 <= byte < 0xC0)
    return offsets


def _break_score(token_bytes: bytes, next_bytes: bytes) -> int:
    """How good a place the end of this token is to end a chunk (0: inside a word)."""
    if b"\n\n" in token_bytes:
        return 4
    if b"\n" in token_bytes:
        return 3
    if token_bytes.rstrip().endswith(_SENTENCE_ENDS):
        return 2
    if token_bytes[-1:].isspace() or next_bytes[:1].isspace() or not next_bytes:
        return 1
    return 0


def _starts_word(token_bytes: bytes) -> bool:
    return token_bytes[:1].isspace()


class _Windows:
    """The joined text, its tokens with the character offset of each, and where each page starts:
    what choosing a window's ends and slicing its chunk needs."""

    def __init__(self, text: str, encoding: Any, page_starts: list[int], page_numbers: list[int]) -> None:
        self.text = text
        self.encoding = encoding
        self.tokens = encoding.encode(text, disallowed_special=())
        self.offsets = token_offsets(encoding, self.tokens)
        self.total = len(self.tokens)
        self.page_starts = page_starts
        self.page_numbers = page_numbers

    def char_at(self, token_index: int) -> int:
        return len(self.text) if token_index >= self.total else self.offsets[token_index]

    def token_bytes(self, token_index: int) -> bytes:
        if token_index >= self.total:
            return b""
        return self.encoding.decode_single_token_bytes(self.tokens[token_index])

    def page_of(self, char_offset: int) -> int:
        return self.page_numbers[max(0, bisect.bisect_right(self.page_starts, char_offset) - 1)]

    def breaks_within(self, char_start: int, char_end: int) -> tuple[tuple[int, int], ...]:
        first = bisect.bisect_right(self.page_starts, char_start)
        last = bisect.bisect_left(self.page_starts, char_end)
        return tuple((self.page_starts[i] - char_start, self.page_numbers[i]) for i in range(first, last))

    def window_end(self, start: int, chunk_tokens: int) -> int:
        """Where the window from ``start`` ends: ``chunk_tokens`` later, or earlier after a paragraph /
        line / sentence / word in the window's last quarter."""
        end = min(start + chunk_tokens, self.total)
        if end >= self.total:
            return end
        best, best_score = end, -1
        for candidate in range(end - 1, start + (3 * chunk_tokens) // 4 - 1, -1):
            score = _break_score(self.token_bytes(candidate), self.token_bytes(candidate + 1))
            if score > best_score:
                best, best_score = candidate + 1, score
                if score == 4:
                    break
        return best

    def next_start(self, start: int, end: int, overlap: int) -> int:
        """Where the next window starts: ``overlap`` tokens before ``end``, on a word boundary when one
        is near (a little earlier, else a little later)."""
        next_start = max(end - overlap, start + 1)
        nearby = [*range(next_start, max(start, next_start - 12), -1), *range(next_start + 1, min(end, next_start + 8))]
        return next((c for c in nearby if _starts_word(self.token_bytes(c))), next_start)

    def chunk(self, index: int, start: int, end: int) -> ChunkData | None:
        """Tokens ``start``..``end`` as a chunk, its text stripped (None when it is only whitespace)."""
        char_start, char_end = self.char_at(start), self.char_at(end)
        piece = self.text[char_start:char_end]
        stripped = piece.strip()
        if not stripped:
            return None
        char_start += len(piece) - len(piece.lstrip())
        char_end = char_start + len(stripped)
        return ChunkData(
            index=index,
            text=stripped,
            page_start=self.page_of(char_start),
            page_end=self.page_of(max(char_start, char_end - 1)),
            token_count=end - start,
            char_start=char_start,
            char_end=char_end,
            page_breaks=self.breaks_within(char_start, char_end),
        )


def chunk_pages(
    pages: Sequence[PageText], *, chunk_tokens: int, overlap: int, encoding_name: str = "cl100k_base"
) -> list[ChunkData]:
    """Split the pages' text into overlapping token windows."""
    if chunk_tokens <= 0:
        raise ValueError("chunk_tokens must be positive")
    overlap = max(0, min(overlap, chunk_tokens // 2))
    text, page_starts, page_numbers = join_pages(pages)
    if not text.strip():
        return []
    windows = _Windows(text, get_encoding(encoding_name), page_starts, page_numbers)
    chunks: list[ChunkData] = []
    start = 0
    while start < windows.total:
        end = windows.window_end(start, chunk_tokens)
        chunk = windows.chunk(len(chunks), start, end)
        if chunk is not None:
            chunks.append(chunk)
        if end >= windows.total:
            break
        start = windows.next_start(start, end, overlap)
    return chunks


def pages_of_span(
    page_start: int, page_end: int, page_breaks: Sequence[Sequence[int]] | None, start: int, end: int
) -> tuple[int, int]:
    """The pages of characters ``start``..``end`` (exclusive) of a chunk on pages ``page_start``..``page_end``
    whose later pages begin at the ``(offset, page)`` pairs of ``page_breaks`` (None: unknown, the
    chunk's whole range)."""
    if page_breaks is None:
        return page_start, page_end
    end = max(start + 1, end)
    first = last = page_start
    for offset, page in page_breaks:
        if offset <= start:
            first = page
        if offset < end:
            last = page
    return first, max(first, last)
