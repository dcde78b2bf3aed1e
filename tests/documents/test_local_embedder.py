"""The local MiniLM embedder: hash-checked files, no truncation (windows averaged), semantic matches."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from documents.embedding_base import EmbeddingError
from documents.embeddings import get_embedder, tenant_embedder
from documents.local_embedder import LOCAL_DIMENSIONS, TOKENIZER_PATH, LocalEmbedder


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    embedder = LocalEmbedder()
    embedder.load()
    return embedder


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_vectors_are_unit_length_384_and_deterministic(local: LocalEmbedder) -> None:
    first = local.embed(["Annual leave is twenty-five days.", "The boiler is serviced in May."]).vectors
    again = local.embed(["Annual leave is twenty-five days."]).vectors
    assert [len(v) for v in first] == [LOCAL_DIMENSIONS, LOCAL_DIMENSIONS]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in first)
    assert first[0] == pytest.approx(again[0], abs=1e-6)


def test_the_tokenizer_files_truncation_is_switched_off(local: LocalEmbedder) -> None:
    from tokenizers import Tokenizer

    text = " ".join(f"topic{i} widget" for i in range(400))
    stock = Tokenizer.from_file(str(TOKENIZER_PATH))
    assert len(stock.encode(text).ids) == 128  # what the file does on its own
    pieces = local.word_pieces(text)
    assert len(pieces) > 1000
    windows = local.windows(pieces)
    assert len(windows) == math.ceil(len(pieces) / 254)
    assert all(len(w) <= 256 and w[0] == 101 and w[-1] == 102 for w in windows)
    assert [p for w in windows for p in w[1:-1]] == pieces  # every word-piece is read, once


def test_a_chunk_whose_last_window_alone_matches_is_found(local: LocalEmbedder) -> None:
    """Two chunks share a long first window and differ only after word-piece 254: a truncating
    embedder would give them the same vector; windows averaged tell them apart."""
    lead = " ".join(
        "The quarterly report lists the office furniture inventory, the printer toner stock and the "
        "parking space allocation for each department."
        for _ in range(12)
    )
    assert len(local.word_pieces(lead)) > 260
    bees = lead + " Honey bees communicate the direction of flowers to their hive mates through a waggle dance."
    tax = lead + " The municipal property tax rate rises by two percent next year for commercial buildings."
    query = "How do bees tell each other where food is?"
    [q], [b], [t] = (local.embed([text]).vectors for text in (query, bees, tax))
    assert cosine(q, b) > cosine(q, t) + 0.02
    truncated = local.embed([local._tokenizer.decode(local.word_pieces(bees)[:254])]).vectors[0]
    assert cosine(b, truncated) < 0.995  # the tail moved the vector: it was not cut off


def test_paraphrases_match_without_shared_words(local: LocalEmbedder) -> None:
    passages = [
        "Employees are entitled to twenty-five days of paid annual leave per calendar year.",
        "The server room must be kept below twenty-four degrees Celsius at all times.",
        "Invoices are settled within thirty days of receipt by bank transfer.",
    ]
    vectors = local.embed(passages).vectors
    query = local.embed_query("How much holiday time do workers get?").vectors[0]
    scores = [cosine(query, v) for v in vectors]
    assert scores.index(max(scores)) == 0


def test_a_tampered_tokenizer_or_model_is_refused(tmp_path: Path) -> None:
    tokenizer = tmp_path / "tokenizer.json"
    shutil.copyfile(TOKENIZER_PATH, tokenizer)
    with tokenizer.open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(EmbeddingError, match="tokenizer file"):
        LocalEmbedder(tokenizer_path=tokenizer).load()

    model = tmp_path / "model.onnx"
    model.write_bytes(b"not a model")
    with pytest.raises(EmbeddingError, match="model file"):
        LocalEmbedder(model_path=model).load()
    with pytest.raises(EmbeddingError, match="missing"):
        LocalEmbedder(model_path=tmp_path / "absent.onnx").load()


def test_the_tenant_setting_picks_the_embedder(tenant: Any, settings: Any) -> None:
    settings.EMBEDDING_PROVIDER = "hashing"
    assert tenant_embedder(tenant).provider == "hashing"
    tenant.settings = {"embedder": "local"}
    assert tenant_embedder(tenant) is get_embedder("local")  # loaded once per process


@pytest.mark.django_db
def test_local_search_keeps_the_tenant_filter_recall_on_its_own_hnsw_index(
    tenant: Any, other_tenant: Any, user: Any, other_user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other tenant holds most of the local embedder's vectors; the forced HNSW plan (iterative
    scan, its partial index) still returns this tenant's full top-k, and the paraphrase's page first."""
    from documents.models import Document
    from documents.search import search_chunks
    from documents.vectors import index_name
    from tests.ready_documents import store_page_chunks

    for owner in (tenant, other_tenant):
        owner.settings = {"embedder": "local"}
        owner.save(update_fields=["settings"])
    pages = [
        "Staff are entitled to twenty-five days of paid annual leave each calendar year.",
        "Expense claims need a receipt and are reimbursed with the next salary payment.",
        "The office is closed on public holidays and between Christmas and New Year.",
    ]
    mine = Document.objects.create(tenant=tenant, owner=user, title="handbook", sha256="a" * 64, status="ready")
    store_page_chunks(mine, pages, chunk_tokens=60)
    theirs = Document.objects.create(
        tenant=other_tenant, owner=other_user, title="noise", sha256="b" * 64, status="ready"
    )
    store_page_chunks(theirs, [f"Holiday rota {i}: annual leave requests for team {i}." for i in range(120)])

    settings.SEARCH_EXACT_MAX_CHUNKS = 0
    from tests.documents.search_sql import explain_semantic, ran

    plans = explain_semantic(monkeypatch)
    hits = search_chunks(tenant=tenant, query="How much vacation do employees get?", mode="semantic", top_k=3)
    assert ran(plans[0], index_name("all-MiniLM-L6-v2-int8", 384))
    assert len(hits) == 3 and {h.document_id for h in hits} == {mine.pk}
    assert hits[0].page_start == 1
