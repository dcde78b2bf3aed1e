"""What every embedder shares: the :class:`Embedder` base (token counting, batching within the API's
limits, a progress callback per batch), its result (:class:`Embeddings`) and its error
(:class:`EmbeddingError`).

The providers are :class:`documents.embeddings.HashingEmbedder`,
:class:`documents.embeddings.OpenAIEmbedder` and :class:`documents.local_embedder.LocalEmbedder`;
which one a tenant uses is chosen in :mod:`documents.embeddings`. A provider implements
``_embed_batch`` (one request's worth of texts) and may override ``count_tokens`` (the batching
budget is counted in the provider's own tokens) and ``max_batch_inputs``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from config.errors import UpstreamError
from documents.tokenizer import get_encoding

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


class Embedder(ABC):
    """Turns texts into vectors. ``provider``/``model``/``dimensions`` are recorded on every chunk.

    ``metered``: the provider bills by the token, so its tokens go to the usage ledger (and count
    against the quotas). The offline hashing provider costs nothing and is not metered.
    """

    provider: str = ""
    model: str = ""
    dimensions: int = 0
    metered: bool = False
    max_batch_inputs: int = MAX_BATCH_INPUTS  # inputs per _embed_batch call (a progress checkpoint each)

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
        max_inputs = max(1, min(settings.EMBEDDING_BATCH_SIZE, self.max_batch_inputs))
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
