"""Embedding providers: ``openai`` (any OpenAI-compatible server) and the offline ``hashing`` one.

``settings.EMBEDDING_PROVIDER``: ``openai``, ``hashing`` or ``auto`` (OpenAI when ``OPENAI_API_KEY``
is set). Both produce L2-normalised vectors of ``EMBEDDING_DIMENSIONS`` (at most
:data:`documents.models.VECTOR_DIMENSIONS`; shorter vectors are zero-padded for storage, which keeps
cosine distances unchanged).

``hashing`` is lexical, not semantic: feature hashing of lower-cased tiktoken tokens and token
bigrams, sub-linear term frequency, a hashed sign, L2 normalisation. Deterministic, offline, free,
and good at finding passages that share words with the query; it does not know synonyms.

``openai`` uses the official client with ``max_retries=0`` and retries itself, once per request
(not per batch, not again in Celery), with exponential backoff and jitter on 408/409/429/5xx,
timeouts and connection errors, honouring ``Retry-After`` / ``retry-after-ms``. Batches keep within
the API's limits: ``EMBEDDING_BATCH_SIZE`` inputs (≤ 2048) and ``EMBEDDING_BATCH_TOKENS`` tokens
(≤ about 250k of the 300k allowed) per request.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings

from config.errors import UpstreamError
from documents.models import VECTOR_DIMENSIONS
from documents.tokenizer import encoding_for_model, get_encoding

logger = logging.getLogger(__name__)

MAX_BATCH_INPUTS = 2048
MAX_BATCH_TOKENS = 300_000
MAX_INPUT_TOKENS = 8191


class EmbeddingError(UpstreamError):
    """The embedding provider failed (``transient`` when retrying later may help)."""

    code = "embedding_failed"
    default_message = "The embedding provider failed."

    def __init__(self, message: str | None = None, *, transient: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.transient = transient


@dataclass(frozen=True)
class Embeddings:
    """Vectors (one per input, in order) and the tokens the provider counted."""

    vectors: list[list[float]]
    tokens: int


def l2_normalise(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return vector
    return [v / norm for v in vector]


def pad(vector: Sequence[float], size: int) -> list[float]:
    """``vector`` zero-padded to ``size`` (the storage width)."""
    if len(vector) > size:
        raise ValueError(f"a {len(vector)}-dimension vector does not fit the {size}-dimension column")
    return [*vector, *([0.0] * (size - len(vector)))]


def vector_literal(vector: Sequence[float]) -> str:
    """``vector`` zero-padded to the column's width as pgvector's text form (``[x,y,...]``, 5 digits).

    The one form both the chunk store (COPY) and search (a query parameter) send.
    """
    return "[" + ",".join(f"{value:.5g}" for value in pad(vector, VECTOR_DIMENSIONS)) + "]"


class Embedder(ABC):
    """Turns texts into vectors. ``provider``/``model``/``dimensions`` are recorded on every chunk.

    ``metered``: the provider bills by the token, so its tokens go to the usage ledger (and count
    against the quotas). The offline hashing provider costs nothing and is not metered.
    """

    provider: str = ""
    model: str = ""
    dimensions: int = 0
    metered: bool = False

    def count_tokens(self, text: str) -> int:
        return len(self._encoding().encode(text, disallowed_special=()))

    def _encoding(self) -> Any:
        return get_encoding()

    def batches(self, texts: Sequence[str], *, max_inputs: int, max_tokens: int) -> Iterator[tuple[int, int]]:
        """Yield ``(start, end)`` index ranges each within ``max_inputs`` inputs and ``max_tokens`` tokens."""
        start, tokens = 0, 0
        for index, text in enumerate(texts):
            count = self.count_tokens(text)
            if index > start and (index - start >= max_inputs or tokens + count > max_tokens):
                yield start, index
                start, tokens = index, 0
            tokens += count
        if start < len(texts):
            yield start, len(texts)

    def embed(self, texts: Sequence[str], *, on_batch: Callable[[int, int], None] | None = None) -> Embeddings:
        """Embed ``texts`` in batches; ``on_batch(done, total)`` runs after each batch (a checkpoint)."""
        vectors: list[list[float]] = []
        tokens = 0
        max_inputs = max(1, min(settings.EMBEDDING_BATCH_SIZE, MAX_BATCH_INPUTS))
        max_tokens = max(1, min(settings.EMBEDDING_BATCH_TOKENS, MAX_BATCH_TOKENS))
        for start, end in self.batches(texts, max_inputs=max_inputs, max_tokens=max_tokens):
            result = self._embed_batch(list(texts[start:end]))
            if len(result.vectors) != end - start:
                raise EmbeddingError(f"The provider returned {len(result.vectors)} vectors for {end - start} inputs.")
            vectors.extend(result.vectors)
            tokens += result.tokens
            if on_batch is not None:
                on_batch(end, len(texts))
        return Embeddings(vectors, tokens)

    def embed_query(self, text: str) -> Embeddings:
        """One vector for a search query."""
        return self._embed_batch([text])

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> Embeddings: ...


# --- hashing ------------------------------------------------------------------------------------


def _stable_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class HashingEmbedder(Embedder):
    """Offline, deterministic, lexical embeddings by feature hashing (see the module docstring)."""

    provider = "hashing"
    bigram_weight = 0.5

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.model = "hashing-v1"
        self._features: dict[int, bytes] = {}

    def _feature(self, token: int) -> bytes:
        """A token's feature: its text lower-cased and stripped (so " Fox", "fox" and "FOX" agree)."""
        feature = self._features.get(token)
        if feature is None:
            raw = self._encoding().decode_single_token_bytes(token)
            feature = raw.strip().lower()
            self._features[token] = feature
        return feature

    def _slot(self, feature: bytes) -> tuple[int, float]:
        value = _slot_cache(feature)
        return value[0] % self.dimensions, value[1]

    def vector(self, text: str) -> tuple[list[float], int]:
        """The vector of ``text`` and its token count."""
        tokens = self._encoding().encode(text.lower(), disallowed_special=())
        counts: dict[bytes, int] = {}
        bigrams: dict[bytes, int] = {}
        previous = b""
        for token in tokens:
            feature = self._feature(token)
            if not feature:
                continue
            counts[feature] = counts.get(feature, 0) + 1
            if previous:
                bigram = previous + b"\x00" + feature
                bigrams[bigram] = bigrams.get(bigram, 0) + 1
            previous = feature
        vector = [0.0] * self.dimensions
        for features, weight in ((counts, 1.0), (bigrams, self.bigram_weight)):
            for feature, count in features.items():
                slot, sign = self._slot(feature)
                vector[slot] += sign * weight * (1.0 + math.log(count))
        return l2_normalise(vector), len(tokens)

    def _embed_batch(self, texts: list[str]) -> Embeddings:
        vectors: list[list[float]] = []
        tokens = 0
        for text in texts:
            vector, count = self.vector(text)
            vectors.append(vector)
            tokens += count
        return Embeddings(vectors, tokens)


@lru_cache(maxsize=200_000)
def _slot_cache(feature: bytes) -> tuple[int, float]:
    value = _stable_hash(feature)
    return value >> 1, (1.0 if value & 1 else -1.0)


# --- OpenAI -------------------------------------------------------------------------------------


def retry_after_seconds(headers: Any) -> float | None:
    """The server's ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date), if any."""
    if headers is None:
        return None
    try:
        value = headers.get("retry-after-ms")
        if value:
            return max(0.0, float(value) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAIEmbedder(Embedder):
    """The official ``openai`` client against OpenAI or any compatible server (``OPENAI_BASE_URL``)."""

    provider = "openai"
    metered = True
    retryable_statuses = frozenset({408, 409, 429})

    def __init__(
        self,
        *,
        model: str,
        dimensions: int,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import openai

        self.model = model
        self.dimensions = dimensions
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.sleep = sleep
        # max_retries=0: the client must not retry on its own, or its retries multiply with ours.
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)
        self.send_dimensions = model.startswith("text-embedding-3")

    def _encoding(self) -> Any:
        return encoding_for_model(self.model)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        return min(self.backoff_max, self.backoff_base * (2**attempt)) * random.uniform(0.5, 1.0)

    def _embed_batch(self, texts: list[str]) -> Embeddings:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if self.send_dimensions:
            kwargs["dimensions"] = self.dimensions
        attempt = 0
        while True:
            try:
                response = self.client.embeddings.create(**kwargs)
                break
            except openai.APIStatusError as exc:
                status = exc.status_code
                body_code = getattr(exc, "code", None)
                retryable = (status in self.retryable_statuses or status >= 500) and body_code != "insufficient_quota"
                if not retryable or attempt >= self.max_retries:
                    raise EmbeddingError(
                        f"The embedding provider answered {status}: {exc.message}"[:500],
                        transient=retryable,
                        details={"status": status},
                    ) from exc
                delay = self._delay(attempt, retry_after_seconds(exc.response.headers))
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                if attempt >= self.max_retries:
                    raise EmbeddingError(f"The embedding provider is unreachable: {exc}"[:500], transient=True) from exc
                delay = self._delay(attempt, None)
            logger.warning(
                "embedding_retry", extra={"attempt": attempt + 1, "delay": round(delay, 3), "model": self.model}
            )
            self.sleep(delay)
            attempt += 1

        data = sorted(response.data, key=lambda item: item.index)
        vectors: list[list[float]] = []
        for item in data:
            vector = list(item.embedding)
            if len(vector) != self.dimensions:
                raise EmbeddingError(
                    f"The model returned {len(vector)} dimensions, EMBEDDING_DIMENSIONS is {self.dimensions}."
                )
            vectors.append(vector)
        usage = getattr(response, "usage", None)
        tokens = int(getattr(usage, "total_tokens", 0) or getattr(usage, "prompt_tokens", 0) or 0)
        if not tokens:
            tokens = sum(self.count_tokens(text) for text in texts)
        return Embeddings(vectors, tokens)


# --- selection ----------------------------------------------------------------------------------


def provider_name() -> str:
    """The provider ``EMBEDDING_PROVIDER`` resolves to (``auto``: openai when a key is set)."""
    name = (settings.EMBEDDING_PROVIDER or "auto").lower()
    if name == "auto":
        return "openai" if settings.OPENAI_API_KEY else "hashing"
    if name not in {"openai", "hashing"}:
        raise ValueError(f"Unknown EMBEDDING_PROVIDER {name!r}; expected auto, openai or hashing")
    return name


def get_embedder() -> Embedder:
    """The configured embedder (one per distinct configuration and process)."""
    name = provider_name()
    if name == "hashing":
        return _hashing(settings.EMBEDDING_DIMENSIONS)
    return _openai(
        settings.EMBEDDING_MODEL,
        settings.EMBEDDING_DIMENSIONS,
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        float(settings.OPENAI_TIMEOUT_SECONDS),
        int(settings.OPENAI_MAX_RETRIES),
    )


@lru_cache(maxsize=8)
def _hashing(dimensions: int) -> HashingEmbedder:
    return HashingEmbedder(dimensions)


@lru_cache(maxsize=8)
def _openai(
    model: str, dimensions: int, api_key: str, base_url: str | None, timeout: float, retries: int
) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model=model, dimensions=dimensions, api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries
    )
