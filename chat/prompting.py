"""Prompt building for grounded answers: numbered sources, recent history, the token budget, citations.

Pure functions (no database, no network): :mod:`chat.answering` gathers the inputs and calls these.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from documents.chunking import pages_of_span
from documents.tokenizer import encoding_for_model

DEFAULT_SYSTEM_PROMPT = "You are DocuMind, an assistant that answers questions about the user's documents."

LANGUAGE_NAMES = {
    "en": "English",
    "fa": "Persian (Farsi)",
    "ar": "Arabic",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "tr": "Turkish",
    "ru": "Russian",
    "zh": "Chinese",
}

# Letters that Persian uses and Arabic does not (pe, che, zhe, gaf) plus the Persian forms of kaf/yeh.
_PERSIAN_LETTERS = set("پچژگکی")
_CITATION = re.compile(r"\[(\s*[0-9۰-۹٠-٩]+(?:\s*[,،]\s*[0-9۰-۹٠-٩]+)*\s*)\]")
_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")

# The fixed texts DocuMind itself writes (no model involved), in the languages it can detect.
TEXTS: dict[str, dict[str, str]] = {
    "no_sources": {
        "en": "I could not find anything in your documents that answers this question, so I won't guess. "
        "Try rephrasing it, or check that the right documents are uploaded and ready.",
        "fa": "در اسناد شما چیزی پیدا نکردم که به این پرسش پاسخ دهد، پس حدس نمی‌زنم. "
        "پرسش را به شکل دیگری بنویسید یا مطمئن شوید اسناد درست بارگذاری و آماده شده‌اند.",
    },
    "extractive_notice": {
        "en": "No language model is configured, so here are the most relevant passages from your documents:",
        "fa": "هیچ مدل زبانی پیکربندی نشده است؛ مرتبط‌ترین بخش‌های اسناد شما این‌ها هستند:",
    },
}


SENTENCE_END = re.compile(r"(?<=[.!?؟。])\s+|\n{2,}|(?<=[:;])\n")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "does",
        "did",
        "do",
        "can",
        "about",
        "into",
        "than",
        "then",
        "there",
        "these",
        "those",
        "از",
        "و",
        "در",
        "به",
        "که",
        "این",
        "را",
        "با",
        "است",
        "برای",
        "آن",
        "یک",
        "تا",
        "هم",
        "چه",
        "چی",
        "کدام",
    ]
)


def terms(text: str) -> set[str]:
    """The lower-cased words of ``text`` that carry meaning (no stop words, no single letters)."""
    return {w for w in (m.lower() for m in _WORD.findall(text)) if len(w) > 1 and w not in _STOPWORDS}


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the sentences of ``text`` (split as :data:`SENTENCE_END` says)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in SENTENCE_END.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def text_for(key: str, language: str | None) -> str:
    """One of :data:`TEXTS` in ``language`` (English when there is no translation)."""
    variants = TEXTS[key]
    return variants.get(language or "en", variants["en"])


def detect_language(text: str) -> str | None:
    """``"fa"``/``"ar"`` for Arabic-script text (Persian when it has Persian-only letters), ``"en"`` for
    Latin script, None when unsure. Deliberately small: it only has to tell scripts apart."""
    arabic = latin = persian = 0
    for char in text:
        if not char.isalpha():
            continue
        if char in _PERSIAN_LETTERS:
            persian += 1
        name = unicodedata.name(char, "")
        if name.startswith("ARABIC"):
            arabic += 1
        elif name.startswith("LATIN"):
            latin += 1
    if arabic and arabic >= latin:
        return "fa" if persian else "ar"
    if latin:
        return "en"
    return None


def answer_language(question: str, setting: str | None) -> tuple[str | None, str]:
    """The language to answer in: (code or None, instruction sentence for the model).

    The tenant setting ``answer_language`` (``auto`` by default) may force one; otherwise the answer
    follows the question's language.
    """
    forced = (setting or "auto").strip()
    if forced and forced.lower() != "auto":
        code = forced.lower() if forced.lower() in LANGUAGE_NAMES else None
        return (
            code,
            f"Always answer in {LANGUAGE_NAMES.get(forced.lower(), forced)}, whatever language the question is in.",
        )
    detected = detect_language(question)
    instruction = "Answer in the same language as the user's question."
    if detected in ("fa", "ar"):
        instruction += (
            f" The question is written in {LANGUAGE_NAMES[detected]}, so answer in {LANGUAGE_NAMES[detected]}."
        )
    return detected, instruction


@dataclass
class Source:
    """A retrieved chunk as the prompt numbers it (``page_breaks``: the chunk's, None when unknown)."""

    n: int
    chunk_id: str
    document_id: str
    document_title: str
    page_start: int | None
    page_end: int | None
    text: str
    score: float = 0.0
    page_breaks: list[list[int]] | None = None

    @staticmethod
    def pages_label(first: int | None, last: int | None) -> str:
        if first is None:
            return ""
        if last is None or last == first:
            return f"page {first}"
        return f"pages {first}-{last}"

    source: str = "text"  # the chunk's text came from the PDF's text layer or from OCR
    ocr_confidence: float | None = None  # OCR: the lowest confidence of the chunk's scanned pages

    @property
    def pages(self) -> str:
        return self.pages_label(self.page_start, self.page_end)

    def pages_of(self, start: int, end: int) -> tuple[int | None, int | None]:
        """The pages of ``text[start:end]``."""
        if self.page_start is None:
            return None, None
        return pages_of_span(self.page_start, self.page_end or self.page_start, self.page_breaks, start, end)

    def cited_span(self, claims: list[str]) -> tuple[int, int, int, int] | None:
        """Where in the chunk the ``claims`` citing it come from: ``(first page, last page, snippet
        start, snippet end)`` over the sentences that share the most words with each claim, or None
        when no sentence shares a word with any of them (the whole chunk is cited then)."""
        sentences = [(start, end, terms(self.text[start:end])) for start, end in sentence_spans(self.text)]
        matched: list[tuple[int, int]] = []
        for claim in claims:
            wanted = terms(claim)
            best = max(sentences, key=lambda item: len(wanted & item[2]), default=None)
            if best is not None and wanted & best[2]:
                matched.append((best[0], best[1]))
        if not matched:
            return None
        pages = [self.pages_of(start, end) for start, end in matched]
        first = min(p[0] for p in pages if p[0] is not None) if self.page_start is not None else None
        last = max(p[1] for p in pages if p[1] is not None) if self.page_start is not None else None
        return first, last, matched[0][0], matched[0][1]  # type: ignore[return-value]

    def citation(self, snippet_chars: int = 240, claims: list[str] | None = None) -> dict[str, Any]:
        """The citation of this source; with ``claims`` (the answer's text citing it), of the span they
        quote: its pages and its text as the snippet."""
        page_start, page_end, text = self.page_start, self.page_end, self.text
        span = self.cited_span(claims) if claims else None
        if span is not None:
            page_start, page_end = span[0], span[1]
            text = self.text[span[2] :]  # the snippet starts at the cited sentence
        snippet = " ".join(text.split())
        if len(snippet) > snippet_chars:
            snippet = snippet[: snippet_chars - 1].rstrip() + "…"
        return {
            "n": self.n,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "document_title": self.document_title,
            "page_start": page_start,
            "page_end": page_end,
            "snippet": snippet,
            "source": self.source,
            "ocr_confidence": self.ocr_confidence,
        }


@dataclass
class Prompt:
    """The messages for the model and what went into them."""

    messages: list[dict[str, str]]
    sources: list[Source]
    prompt_tokens: int
    history_turns: int
    language: str | None
    dropped_sources: int = 0
    notes: list[str] = field(default_factory=list)


def _instructions(system_prompt: str | None, language_instruction: str) -> str:
    return "\n".join(
        [
            (system_prompt or DEFAULT_SYSTEM_PROMPT).strip(),
            "",
            "Answer using only the numbered sources below. Cite every statement with the number of the source it "
            "comes from in square brackets, like [1] or [2][3]; cite only numbers that appear in the sources.",
            "If the sources do not contain the answer, say that the documents do not answer the question instead of "
            "guessing.",
            language_instruction,
        ]
    )


def build_prompt(
    *,
    question: str,
    sources: list[Source],
    history: list[dict[str, str]],
    model: str,
    budget_tokens: int,
    system_prompt: str | None = None,
    language_setting: str | None = None,
) -> Prompt:
    """Fit instructions, numbered sources and recent history into ``budget_tokens`` (tiktoken).

    Instructions and the question always go in. Sources come next, in rank order, and may use up to
    three quarters of what is left; the most recent history turns fill the rest (oldest dropped first).
    ``history`` is oldest-first ``{"role", "content"}`` dicts.
    """
    encoding = encoding_for_model(model)

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=())) + 4  # + per-message overhead

    language, language_instruction = answer_language(question, language_setting)
    system = _instructions(system_prompt, language_instruction)
    used = count(system) + count(question) + 3
    left = max(0, budget_tokens - used)

    source_budget = left * 3 // 4
    kept: list[Source] = []
    blocks: list[str] = []
    for source in sources:
        header = f"[{len(kept) + 1}] {source.document_title}" + (f" ({source.pages})" if source.pages else "")
        block = f"{header}\n{source.text.strip()}"
        cost = count(block)
        if cost > source_budget:
            continue
        source_budget -= cost
        left -= cost
        kept.append(Source(**{**source.__dict__, "n": len(kept) + 1}))
        blocks.append(block)
    system_full = system + "\n\nSources:\n\n" + ("\n\n".join(blocks) if blocks else "(none)")

    turns: list[dict[str, str]] = []
    for turn in reversed(history):
        cost = count(turn["content"])
        if cost > left:
            break
        left -= cost
        turns.append({"role": turn["role"], "content": turn["content"]})
    turns.reverse()

    messages = [{"role": "system", "content": system_full}, *turns, {"role": "user", "content": question}]
    prompt_tokens = sum(count(m["content"]) for m in messages) + 3
    return Prompt(
        messages=messages,
        sources=kept,
        prompt_tokens=prompt_tokens,
        history_turns=len(turns),
        language=language,
        dropped_sources=len(sources) - len(kept),
    )


def cited_numbers(text: str) -> list[int]:
    """Source numbers cited as ``[n]`` / ``[n, m]`` (Persian and Arabic digits too), in order of first use."""
    seen: list[int] = []
    for match in _CITATION.finditer(text):
        for part in re.split(r"[,،]", match.group(1)):
            number = int(part.strip().translate(_DIGITS))
            if number not in seen:
                seen.append(number)
    return seen


def claims(text: str) -> dict[int, list[str]]:
    """For every cited source number, the pieces of ``text`` that cite it: the text between the previous
    citation (or line break) and the marker; a marker right after another shares its claim."""
    found: dict[int, list[str]] = {}
    previous_end, previous_claim = 0, ""
    for match in _CITATION.finditer(text):
        piece = text[previous_end : match.start()]
        piece = piece.rsplit("\n", 1)[-1].strip(" -*•\t")
        claim = piece if len(terms(piece)) > 0 else previous_claim
        for part in re.split(r"[,،]", match.group(1)):
            number = int(part.strip().translate(_DIGITS))
            if claim:
                found.setdefault(number, []).append(claim)
            else:
                found.setdefault(number, [])
        previous_end, previous_claim = match.end(), claim
    return found


def citations_for(text: str, sources: list[Source]) -> list[dict[str, Any]]:
    """The citations an answer actually used, mapped to their chunks (unknown numbers are ignored), each
    naming the pages of the span of the chunk that the answer's citing sentences quote."""
    by_number = {source.n: source for source in sources}
    cited = claims(text)
    return [by_number[n].citation(claims=cited.get(n)) for n in cited_numbers(text) if n in by_number]
