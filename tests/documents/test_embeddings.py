"""Embedding providers: the offline hashing one, and OpenAI's official client against the fake server."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from documents.embedding_base import EmbeddingError
from documents.embeddings import (
    HashingEmbedder,
    OpenAIEmbedder,
    default_provider,
    get_embedder,
    retry_after_seconds,
)
from documents.local_embedder import LocalEmbedder
from documents.models import Chunk, Document
from tenants.models import UsageRecord
from tests.documents.conftest import ingest, known_pages
from tests.documents.pdfs import make_pdf
from tests.fake_openai import FakeOpenAI, fake_vector


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- hashing ------------------------------------------------------------------------------------


def test_hashing_vectors_are_deterministic_normalised_and_sized() -> None:
    embedder = HashingEmbedder(256)
    result = embedder.embed(["The quick brown fox", "The quick brown fox", "Completely different words here"])
    a, b, _c = result.vectors
    assert a == b and len(a) == 256
    assert math.isclose(math.sqrt(sum(v * v for v in a)), 1.0, rel_tol=1e-9)
    assert result.tokens > 0
    assert HashingEmbedder(256).vector("The quick brown fox")[0] == a  # same in a fresh instance (another process)


def test_hashing_is_lexical() -> None:
    embedder = HashingEmbedder(1536)
    query = embedder.vector("budget approved by the committee")[0]
    related = embedder.vector("The committee approved the budget on Tuesday.")[0]
    unrelated = embedder.vector("Penguins swim in cold southern oceans.")[0]
    assert cosine(query, related) > 0.4 > cosine(query, unrelated)
    assert embedder.vector("Budget COMMITTEE")[0] == embedder.vector("budget committee")[0]


def test_batches_stay_within_input_and_token_limits(settings: Any) -> None:
    embedder = HashingEmbedder(64)
    texts = ["one two three"] * 7 + ["word " * 50]
    assert list(embedder.batches(texts, max_inputs=3, max_tokens=10_000)) == [(0, 3), (3, 6), (6, 8)]
    assert list(embedder.batches(texts, max_inputs=100, max_tokens=10)) == [(0, 3), (3, 6), (6, 7), (7, 8)]

    settings.EMBEDDING_BATCH_SIZE = 3
    calls: list[tuple[int, int]] = []
    result = embedder.embed(texts, on_batch=lambda done, total: calls.append((done, total)))
    assert len(result.vectors) == 8
    assert calls == [(3, 8), (6, 8), (8, 8)]


def test_provider_selection(settings: Any) -> None:
    settings.OPENAI_API_KEY = ""
    settings.EMBEDDING_PROVIDER = "auto"
    assert default_provider() == "local" and isinstance(get_embedder(), LocalEmbedder)  # offline default
    assert isinstance(get_embedder("hashing"), HashingEmbedder)
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY"):
        get_embedder("openai")
    settings.OPENAI_API_KEY = "sk-test"
    assert default_provider() == "openai" and isinstance(get_embedder(), OpenAIEmbedder)
    settings.EMBEDDING_PROVIDER = "hashing"
    assert default_provider() == "hashing"
    settings.EMBEDDING_PROVIDER = "word2vec"
    with pytest.raises(ValueError, match="EMBEDDING_PROVIDER"):
        default_provider()


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


# --- OpenAI (official client, fake server) -------------------------------------------------------


def openai_embedder(fake: FakeOpenAI, sleeps: list[float] | None = None, **kwargs: Any) -> OpenAIEmbedder:
    options: dict[str, Any] = {
        "model": "text-embedding-3-small",
        "dimensions": 256,
        "api_key": "sk-test",
        "base_url": fake.base_url,
        "timeout": 5.0,
        "max_retries": 3,
    }
    options.update(kwargs)
    return OpenAIEmbedder(sleep=(sleeps.append if sleeps is not None else lambda _: None), **options)


def test_openai_batches_and_vectors(fake_openai: FakeOpenAI, settings: Any) -> None:
    settings.EMBEDDING_BATCH_SIZE = 4
    texts = [f"passage number {i}" for i in range(10)]

    result = openai_embedder(fake_openai).embed(texts)

    requests = fake_openai.requests_to("embeddings")
    assert [len(r.body["input"]) for r in requests] == [4, 4, 2]
    assert all(r.body["model"] == "text-embedding-3-small" and r.body["dimensions"] == 256 for r in requests)
    assert result.vectors == [pytest.approx(fake_vector(t, 256)) for t in texts]
    assert result.tokens == sum(u["total_tokens"] for u in fake_openai.usage_sent)


def test_openai_token_budget_splits_batches(fake_openai: FakeOpenAI, settings: Any) -> None:
    settings.EMBEDDING_BATCH_SIZE = 2048
    settings.EMBEDDING_BATCH_TOKENS = 100
    openai_embedder(fake_openai).embed(["word " * 40] * 5)
    assert [len(r.body["input"]) for r in fake_openai.requests_to("embeddings")] == [2, 2, 1]


def test_rate_limits_are_retried_after_the_servers_delay_without_client_retries(fake_openai: FakeOpenAI) -> None:
    fake_openai.set_fault("rate_limit", endpoint="embeddings", times=2, retry_after="0.25")
    sleeps: list[float] = []

    result = openai_embedder(fake_openai, sleeps).embed(["hello"])

    assert len(fake_openai.requests_to("embeddings")) == 3  # 2 refusals + 1 success: the client itself did not retry
    assert sleeps == [0.25, 0.25]
    assert result.vectors[0] == pytest.approx(fake_vector("hello", 256))


def test_server_errors_back_off_exponentially_then_give_up(fake_openai: FakeOpenAI) -> None:
    fake_openai.set_fault("server_error", endpoint="embeddings")
    sleeps: list[float] = []

    with pytest.raises(EmbeddingError) as failure:
        openai_embedder(fake_openai, sleeps, max_retries=3, backoff_base=1.0).embed(["hello"])

    assert failure.value.transient and failure.value.code == "embedding_failed"
    assert len(fake_openai.requests_to("embeddings")) == 4
    assert len(sleeps) == 3
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and 2.0 <= sleeps[2] <= 4.0


def test_timeouts_are_retried(fake_openai: FakeOpenAI) -> None:
    # a wide margin: the first request stays silent for 20 s, the timeout is 2 s, the retry answers at once
    fake_openai.set_fault("slow_first_token", endpoint="embeddings", times=1, delay=20.0)
    sleeps: list[float] = []
    started = time.monotonic()
    result = openai_embedder(fake_openai, sleeps, timeout=2.0).embed(["hello"])
    assert time.monotonic() - started < 15, "the timeout did not cut the silent request short"
    assert len(sleeps) == 1 and len(result.vectors) == 1
    assert len(fake_openai.requests_to("embeddings")) == 2


def test_client_errors_are_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.api_key = "sk-the-right-one"
    with pytest.raises(EmbeddingError) as failure:
        openai_embedder(fake_openai, api_key="sk-wrong").embed(["hello"])
    assert not failure.value.transient and "401" in failure.value.message
    assert len(fake_openai.requests_to("embeddings")) == 1


def test_wrong_dimensions_are_an_error(fake_openai: FakeOpenAI) -> None:
    embedder = openai_embedder(fake_openai, model="some-compatible-model", dimensions=256)  # no `dimensions` sent
    with pytest.raises(EmbeddingError, match="1536 dimensions"):
        embedder.embed(["hello"])
    assert "dimensions" not in fake_openai.requests_to("embeddings")[0].body


@pytest.fixture
def openai_settings(fake_openai: FakeOpenAI, settings: Any) -> FakeOpenAI:
    settings.EMBEDDING_PROVIDER = "openai"
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = fake_openai.base_url
    settings.EMBEDDING_MODEL = "text-embedding-3-small"
    settings.EMBEDDING_DIMENSIONS = 512
    settings.OPENAI_MAX_RETRIES = 2
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 100, 10
    return fake_openai


def test_ingestion_with_openai_records_usage_and_is_searchable(
    openai_settings: FakeOpenAI, uploaded: Any, user: Any, tenant: Any
) -> None:
    from documents.search import search_chunks

    document = uploaded(make_pdf(known_pages()))
    ingest(document)

    document.refresh_from_db()
    assert document.status == Document.Status.READY
    assert (document.embedding_model, document.embedding_dimensions) == ("text-embedding-3-small", 512)
    chunk = Chunk.objects.filter(document=document).order_by("index").first()
    vector = chunk.embeddings.get()
    assert (vector.model, vector.dimensions) == ("text-embedding-3-small", 512)
    stored = vector.embedding.to_list() if hasattr(vector.embedding, "to_list") else list(vector.embedding)
    assert len(stored) == 512  # stored at its own width: no padding
    assert stored == pytest.approx(fake_vector(chunk.text, 512), abs=2e-3)  # halfvec precision
    record = UsageRecord.objects.get(tenant=tenant, kind="embedding")
    assert record.user_id == user.pk and record.model == "text-embedding-3-small"
    assert record.embedding_tokens == sum(u["total_tokens"] for u in openai_settings.usage_sent) > 0

    hits = search_chunks(tenant=tenant, query=chunk.text, mode="semantic", top_k=1, user=user)
    assert hits[0].chunk_id == chunk.pk and hits[0].score == pytest.approx(1.0, abs=1e-2)
    assert UsageRecord.objects.filter(tenant=tenant, kind="embedding").count() == 2  # the query was metered too


def test_chunks_of_another_embedding_model_are_not_compared(
    openai_settings: FakeOpenAI, uploaded: Any, tenant: Any, settings: Any
) -> None:
    from documents.search import search_chunks

    settings.EMBEDDING_PROVIDER = "hashing"
    document = uploaded(make_pdf(known_pages()))
    ingest(document)
    settings.EMBEDDING_PROVIDER = "openai"
    assert search_chunks(tenant=tenant, query="zeppelin budget", mode="semantic") == []
    assert search_chunks(tenant=tenant, query="zeppelin budget", mode="keyword")  # words still match


def test_ingestion_fails_typed_when_the_provider_keeps_failing(openai_settings: FakeOpenAI, uploaded: Any) -> None:
    openai_settings.set_fault("rate_limit", endpoint="embeddings", retry_after="0.01")
    document = uploaded(make_pdf(known_pages()))

    with pytest.raises(EmbeddingError):
        ingest(document)

    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    error = document.task.error  # the task row records the run's error
    assert error["type"] == "embedding_failed" and "429" in error["message"]
    assert len(openai_settings.requests_to("embeddings")) == 3  # OPENAI_MAX_RETRIES=2: three tries, no more
    assert not Chunk.objects.filter(document=document).exists()


def test_search_api_answers_502_when_the_provider_is_down(openai_settings: FakeOpenAI, api: Any, settings: Any) -> None:
    from tests.crosstenant import assert_envelope

    settings.OPENAI_MAX_RETRIES = 0
    openai_settings.set_fault("server_error", endpoint="embeddings")
    assert_envelope(api.post("/api/v1/search/", {"query": "anything"}, format="json"), 502, "embedding_failed")
    # keyword search needs no embedding and still answers
    assert api.post("/api/v1/search/", {"query": "anything", "mode": "keyword"}, format="json").status_code == 200
