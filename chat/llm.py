"""Chat providers: ``openai`` (any OpenAI-compatible server) and the offline ``extractive`` one.

A provider streams an answer as :class:`Delta` items and, when it knows them, one :class:`Usage`.
Failures are raised as :class:`config.errors.UpstreamError` subclasses with machine-readable codes, so
the answering pipeline can end the message as failed and tell the client why.

``CHAT_PROVIDER``: ``auto`` (``openai`` when ``OPENAI_API_KEY`` is set, else ``extractive``),
``openai`` or ``extractive``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chat.prompting import Source, sentence_spans, terms, text_for
from config.errors import UpstreamError
from documents.embeddings import retry_after_seconds
from health.metrics import record_provider_error, record_provider_retry

logger = logging.getLogger(__name__)


class UpstreamRateLimited(UpstreamError):
    status_code, code, default_message = (
        503,
        "upstream_rate_limited",
        "The language model provider is rate limiting us.",
    )


class UpstreamTimeout(UpstreamError):
    status_code, code, default_message = 504, "upstream_timeout", "The language model provider did not answer in time."


class UpstreamStreamInterrupted(UpstreamError):
    code, default_message = "upstream_stream_interrupted", "The answer stream from the language model broke off."


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ChatRequest:
    """What a provider needs: the prompt for a model, the question and sources for extraction."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    question: str
    sources: list[Source]
    language: str | None = None
    prompt_tokens: int = 0  # the tiktoken estimate of ``messages``


class ChatProvider(Protocol):
    name: str
    calls_model: bool  # False: no tokens are spent, quotas do not apply

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta | Usage]: ...


# --- openai ----------------------------------------------------------------------------------

# One client per event loop: httpx connection pools belong to the loop that opened them.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], openai.AsyncOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> openai.AsyncOpenAI:
    """The ``AsyncOpenAI`` client for the current settings and event loop."""
    key = (
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.OPENAI_TIMEOUT_SECONDS,
        settings.OPENAI_MAX_RETRIES,
    )
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(key)
    if client is None:
        api_key = settings.OPENAI_API_KEY or ("not-needed" if settings.OPENAI_BASE_URL else "")
        if not api_key:
            raise ImproperlyConfigured(
                "CHAT_PROVIDER=openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server)."
            )
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=settings.OPENAI_BASE_URL,
            timeout=settings.OPENAI_TIMEOUT_SECONDS,
            max_retries=settings.OPENAI_MAX_RETRIES,
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [_count_retry]}),
        )
        per_loop[key] = client
    return client


async def _count_retry(request: Any) -> None:
    """httpx request hook: the client's own retries carry ``x-stainless-retry-count`` > 0."""
    if request.headers.get("x-stainless-retry-count", "0") not in ("", "0"):
        record_provider_retry(provider="chat")


def _retry_after(error: openai.APIStatusError) -> int | None:
    """Whole seconds to wait, at least 1, from the server's ``retry-after-ms``/``Retry-After`` (the one
    parser, :func:`documents.embeddings.retry_after_seconds`), or None when it sent neither."""
    seconds = retry_after_seconds(error.response.headers)
    return None if seconds is None else max(1, math.ceil(seconds))


def translate_error(error: Exception) -> UpstreamError:
    """Our error for an ``openai`` client exception (or a broken stream)."""
    if isinstance(error, openai.RateLimitError):
        retry_after = _retry_after(error)
        return UpstreamRateLimited(
            details={"status": 429, **({"retry_after": retry_after} if retry_after else {})},
            headers={"Retry-After": str(retry_after)} if retry_after else None,
        )
    if isinstance(error, openai.APITimeoutError):
        return UpstreamTimeout()
    if isinstance(error, openai.APIStatusError):
        return UpstreamError(
            f"The language model provider answered {error.status_code}.", details={"status": error.status_code}
        )
    if isinstance(error, openai.APIConnectionError):
        return UpstreamStreamInterrupted("The connection to the language model provider broke off.")
    if isinstance(error, (json.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError)):
        return UpstreamStreamInterrupted("The language model provider sent a malformed response.")
    return UpstreamError()


def _chunk_parts(chunk: Any) -> tuple[list[str], bool, Usage | None]:
    """The text deltas, whether a choice finished, and the usage of one streamed chunk (a dict)."""
    if not isinstance(chunk, dict):
        raise UpstreamStreamInterrupted("The language model provider sent a malformed chunk.")
    texts: list[str] = []
    finished = False
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            texts.append(text)
        if choice.get("finish_reason"):
            finished = True
    usage = chunk.get("usage")
    parsed = None
    if isinstance(usage, dict):
        parsed = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    return texts, finished, parsed


class OpenAIChatProvider:
    """Streams from ``/chat/completions`` with ``stream_options.include_usage``.

    The request goes through the official client (auth, retries with ``Retry-After`` before the stream
    starts, error classes, SSE decoding) with its public ``post()``, and the chunks are read as plain
    dicts: building the typed ``ChatCompletionChunk`` models costs about four times the CPU per chunk,
    which adds up on the event loop when hundreds of answers stream at once.
    """

    name = "openai"
    calls_model = True

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta | Usage]:
        client = async_client()
        response = None
        try:
            response = await client.post(
                "/chat/completions",
                body={
                    "model": request.model,
                    "messages": request.messages,
                    "max_tokens": request.max_tokens,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            finished = False
            async for chunk in response:
                texts, done, usage = _chunk_parts(chunk)
                for text in texts:
                    yield Delta(text)
                if usage is not None:
                    yield Usage(usage.prompt_tokens, usage.completion_tokens)
                finished = finished or done
            if not finished:
                raise UpstreamStreamInterrupted("The answer stream ended before the answer was complete.")
        except UpstreamError as exc:
            record_provider_error(provider="chat", error=exc.code)
            raise
        except (openai.OpenAIError, ValueError, KeyError, TypeError, AttributeError) as exc:
            record_provider_error(provider="chat", error=type(exc).__name__)
            logger.warning("chat_upstream_error", extra={"error": repr(exc)})
            raise translate_error(exc) from exc
        finally:
            if response is not None:
                # Closing the HTTP response tells the server to stop generating (cancel, error, done).
                await asyncio.shield(response.close())


# --- extractive ------------------------------------------------------------------------------


def best_sentences(question: str, sources: list[Source], limit: int = 3) -> list[tuple[str, int, str]]:
    """The sentences of ``sources`` that share the most terms with ``question``: (sentence, source n,
    its pages as "page 3" / "pages 3-4", from the chunk's page breaks).

    Scored by the number of distinct question terms a sentence holds (ties: earlier sources first).
    An empty list when no sentence shares a term with the question.
    """
    wanted = terms(question)
    scored: list[tuple[float, int, int, str, str]] = []
    for rank, source in enumerate(sources):
        for position, (start, end) in enumerate(sentence_spans(source.text)):
            sentence = " ".join(source.text[start:end].split())
            if len(sentence) < 3:
                continue
            overlap = len(wanted & terms(sentence))
            if overlap:
                pages = source.pages_label(*source.pages_of(start, end))
                scored.append((overlap - 0.01 * rank, -position, source.n, sentence, pages))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    picked: list[tuple[str, int, str]] = []
    for _, _, n, sentence, pages in scored:
        if all(sentence != s for s, _, _ in picked):
            picked.append((sentence, n, pages))
        if len(picked) >= limit:
            break
    return picked


class ExtractiveProvider:
    """The offline provider: no model; streams the best-matching sentences with their ``[n]`` and page.

    It says that no language model is configured, in the question's language when it has the words,
    and that nothing relevant was found when no sentence shares a word with the question.
    """

    name = "extractive"
    calls_model = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta | Usage]:
        picked = best_sentences(request.question, request.sources)
        if picked:
            lines = [text_for("extractive_notice", request.language), ""]
            text = "\n".join(lines + [f"- {sentence} [{n}] ({pages})" for sentence, n, pages in picked])
        else:  # retrieval found chunks, but none shares a word with the question
            text = text_for("no_sources", request.language)
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield Delta(piece)
            await asyncio.sleep(0)  # let other sockets run between pieces
        yield Usage(0, 0)


def get_chat_provider(name: str | None = None) -> ChatProvider:
    """The configured provider (``CHAT_PROVIDER``; ``auto`` picks openai when a key is set)."""
    name = (name or settings.CHAT_PROVIDER or "auto").lower()
    if name == "auto":
        name = "openai" if settings.OPENAI_API_KEY else "extractive"
    if name == "openai":
        return OpenAIChatProvider()
    if name == "extractive":
        return ExtractiveProvider()
    raise ImproperlyConfigured(f"Unknown CHAT_PROVIDER {name!r}: use auto, openai or extractive.")
