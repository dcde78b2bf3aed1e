"""Search: each mode finds a known sentence; tenants, status, projects and deletion are respected."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from accounts.models import User
from documents.models import Document
from documents.search import SearchHit, search_chunks
from documents.serializers import SearchResponseSerializer, search_response
from tests.crosstenant import assert_envelope, assert_requires_auth
from tests.documents.conftest import KNOWN_SENTENCE, SEARCH_URL, known_pages
from tests.documents.pdfs import PERSIAN_SECOND, PERSIAN_SENTENCE, filler, make_pdf, make_persian_pdf

MODES = ["semantic", "keyword", "hybrid"]
QUERY = "zeppelin maintenance budget harbour committee"


@pytest.fixture
def corpus(ready_document: Any, settings: Any) -> Document:
    """A document holding the known sentence, and two others that do not."""
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 100, 10
    target = ready_document(make_pdf(known_pages()), "target.pdf")
    ready_document(make_pdf([filler(300, seed=7), filler(300, seed=8)]), "other-1.pdf")
    ready_document(make_pdf([filler(250, seed=9)]), "other-2.pdf")
    return target


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_finds_the_chunk_with_the_sentence(corpus: Document, tenant: Any, mode: str) -> None:
    hits = search_chunks(tenant=tenant, query=QUERY, top_k=3, mode=mode)

    assert hits and isinstance(hits[0], SearchHit)
    best = hits[0]
    assert KNOWN_SENTENCE in best.text
    assert best.document_id == corpus.pk
    assert best.document_title == "target"
    assert (best.page_start, best.page_end) == (2, 2)
    expected = {"semantic": ("semantic",), "keyword": ("keyword",), "hybrid": ("semantic", "keyword")}[mode]
    assert best.retrievers == expected
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_the_approximate_plan_finds_it_too(corpus: Document, tenant: Any, settings: Any, mode: str) -> None:
    settings.SEARCH_EXACT_MAX_CHUNKS = 0  # force the HNSW path
    hits = search_chunks(tenant=tenant, query=QUERY, top_k=3, mode=mode)
    assert KNOWN_SENTENCE in hits[0].text


def test_search_api_returns_ranked_chunks(api: APIClient, corpus: Document) -> None:
    response = api.post(SEARCH_URL, {"query": QUERY}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["mode"], body["top_k"], body["query"]) == ("hybrid", 8, QUERY)
    first = body["results"][0]
    assert set(first) == {
        "chunk_id",
        "document_id",
        "document_title",
        "page_start",
        "page_end",
        "text",
        "source",
        "ocr_confidence",
        "score",
        "retrievers",
    }
    assert first["source"] == "text" and first["ocr_confidence"] is None
    assert first["document_id"] == str(corpus.pk)
    assert KNOWN_SENTENCE in first["text"]
    assert first["retrievers"] == ["semantic", "keyword"]
    assert 1 <= len(body["results"]) <= 8


@pytest.mark.parametrize("mode", MODES)
def test_the_answer_is_what_its_documented_serializer_gives(api: APIClient, corpus: Document, mode: str) -> None:
    """The view builds the answer by hand (the hot path); it must equal the schema's serializer, field for field
    and type for type, for real hits of each mode."""
    query = f"{QUERY} teams notes report"
    response = api.post(SEARCH_URL, {"query": query, "mode": mode, "top_k": 5}, format="json")
    assert response.status_code == 200, response.content
    hits = search_chunks(tenant=corpus.tenant, query=query, top_k=5, mode=mode)
    assert len(hits) >= 2
    documented = SearchResponseSerializer({"query": query, "mode": mode, "top_k": 5, "results": hits}).data
    built = search_response(query=query, mode=mode, top_k=5, hits=hits)

    assert json.dumps(built, sort_keys=True) == json.dumps(
        json.loads(JSONRenderer().render(documented)), sort_keys=True
    )
    assert response.json() == json.loads(JSONRenderer().render(documented))


def test_top_k_limits_the_results(api: APIClient, corpus: Document) -> None:
    for mode in MODES:
        body = api.post(
            SEARCH_URL, {"query": "the report describes teams", "top_k": 2, "mode": mode}, format="json"
        ).json()
        assert len(body["results"]) == 2, mode


def test_another_tenants_chunks_never_appear(
    corpus: Document, client_for: Any, other_user: User, other_tenant: Any, ready_document: Any
) -> None:
    other = client_for(other_user)
    for mode in MODES:
        assert other.post(SEARCH_URL, {"query": QUERY, "mode": mode}, format="json").json()["results"] == []

    # the other tenant uploads the very same bytes: each tenant finds only its own copy
    theirs = ready_document(make_pdf(known_pages()), "target.pdf", client=other)
    for mode in MODES:
        results = other.post(SEARCH_URL, {"query": QUERY, "mode": mode, "top_k": 50}, format="json").json()["results"]
        assert results and {r["document_id"] for r in results} == {str(theirs.pk)}
        mine = search_chunks(tenant=corpus.tenant, query=QUERY, mode=mode, top_k=50)
        assert str(theirs.pk) not in {str(h.document_id) for h in mine}


def test_only_ready_documents_are_searched(corpus: Document, tenant: Any) -> None:
    for status in (Document.Status.PENDING, Document.Status.PROCESSING, Document.Status.FAILED):
        Document.objects.filter(pk=corpus.pk).update(status=status)
        for mode in MODES:
            assert corpus.pk not in {
                h.document_id for h in search_chunks(tenant=tenant, query=QUERY, mode=mode, top_k=50)
            }


def test_a_deleted_document_vanishes_from_search_at_once(api: APIClient, corpus: Document, tenant: Any) -> None:
    assert api.delete(f"/api/v1/documents/{corpus.pk}/").status_code == 204
    for mode in MODES:
        results = api.post(SEARCH_URL, {"query": QUERY, "mode": mode, "top_k": 50}, format="json").json()["results"]
        assert str(corpus.pk) not in {r["document_id"] for r in results}


def test_project_and_document_filters(api: APIClient, ready_document: Any, tenant: Any) -> None:
    project = api.post("/api/v1/projects/", {"name": "Harbour"}, format="json").json()
    inside = ready_document(make_pdf(known_pages()), "inside.pdf", project=project["id"])
    outside = ready_document(make_pdf([KNOWN_SENTENCE + " " + filler(40, seed=3)]), "outside.pdf")

    def ids(**body: Any) -> set[str]:
        response = api.post(SEARCH_URL, {"query": QUERY, "top_k": 50, **body}, format="json")
        assert response.status_code == 200, response.content
        return {r["document_id"] for r in response.json()["results"]}

    assert ids() == {str(inside.pk), str(outside.pk)}
    assert ids(project=project["id"]) == {str(inside.pk)}
    assert ids(document_ids=[str(outside.pk)]) == {str(outside.pk)}
    assert ids(document_ids=[str(uuid.uuid4())]) == set()
    assert ids(document_ids=[]) == set()
    for mode in MODES:
        assert ids(mode=mode, project=project["id"]) == {str(inside.pk)}


def test_another_tenants_project_is_a_validation_error(
    api: APIClient, client_for: Any, other_user: User, corpus: Document
) -> None:
    foreign = client_for(other_user).post("/api/v1/projects/", {"name": "Theirs"}, format="json").json()
    assert_envelope(
        api.post(SEARCH_URL, {"query": QUERY, "project": foreign["id"]}, format="json"), 400, "validation_error"
    )


def test_persian_search(ready_document: Any, tenant: Any, settings: Any) -> None:
    settings.CHUNK_TOKENS, settings.CHUNK_OVERLAP = 60, 10
    document = ready_document(make_persian_pdf([PERSIAN_SENTENCE, PERSIAN_SECOND]), "fa.pdf")
    ready_document(make_pdf([filler(200)]), "en.pdf")
    for mode in MODES:
        hits = search_chunks(tenant=tenant, query="کتابخانه دانشگاه تهران", mode=mode, top_k=2)
        assert hits[0].document_id == document.pk, mode
        assert "کتابخانه" in hits[0].text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({"query": "ok", "top_k": 0}, "top_k"),
        ({"query": "ok", "top_k": 51}, "top_k"),
        ({"query": "ok", "top_k": "many"}, "top_k"),
        ({"query": "ok", "mode": "fuzzy"}, "mode"),
        ({"query": "ok", "document_ids": ["not-a-uuid"]}, "document_ids"),
        ({"query": "ok", "project": "not-a-uuid"}, "project"),
    ],
)
def test_invalid_search_requests_are_400(api: APIClient, body: dict[str, Any], field: str) -> None:
    error = assert_envelope(api.post(SEARCH_URL, body, format="json"), 400, "validation_error")
    assert field in error["details"]["fields"]


def test_limits_are_inclusive(api: APIClient, corpus: Document) -> None:
    assert api.post(SEARCH_URL, {"query": "x" * 2000, "top_k": 50}, format="json").status_code == 200
    assert api.post(SEARCH_URL, {"query": "budget", "top_k": 1}, format="json").status_code == 200


def test_service_validates_its_arguments(tenant: Any) -> None:
    from config.errors import ValidationFailed

    for kwargs in (
        {"query": ""},
        {"query": "a", "top_k": 0},
        {"query": "a", "top_k": 51},
        {"query": "a", "mode": "x"},
        {"query": "a", "project_id": "nope"},
        {"query": "a", "document_ids": ["nope"]},
    ):
        with pytest.raises(ValidationFailed):
            search_chunks(tenant=tenant, **kwargs)


BLANK = ("query must not be empty.", {"query": ["This field may not be blank."]})
TOP_K = ("top_k must be between 1 and 50.", {"top_k": ["Between 1 and 50."]})


@pytest.mark.parametrize(
    ("arguments", "refusal"),
    [
        ({"query": " \n "}, BLANK),
        ({"query": None}, BLANK),  # not a string at all
        ({"query": "x" * 2001}, ("query is longer than 2000 characters.", {"query": ["At most 2000 characters."]})),
        ({"query": "a", "top_k": 0}, TOP_K),
        ({"query": "a", "top_k": 51}, TOP_K),
        ({"query": "a", "top_k": True}, TOP_K),  # a bool is an int to Python, not a number of results
        ({"query": "a", "top_k": 2.0}, TOP_K),
        (
            {"query": "a", "mode": "fuzzy"},
            ("mode must be one of semantic, keyword, hybrid.", {"mode": ["semantic", "keyword", "hybrid"]}),
        ),
        ({"query": "a", "project_id": "nope"}, ("project and document ids must be UUIDs.", None)),
        (
            {"query": "a", "document_ids": [str(uuid.uuid4()), "nope"]},
            ("project and document ids must be UUIDs.", None),
        ),
    ],
)
def test_the_service_names_what_is_wrong(tenant: Any, arguments: dict[str, Any], refusal: tuple[str, Any]) -> None:
    """The service's own refusals (callers other than the API view get them as they are): message and fields."""
    from config.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        search_chunks(tenant=tenant, **arguments)
    message, fields = refusal
    assert caught.value.message == message
    assert caught.value.details == ({"fields": fields} if fields else {})


def test_punctuation_only_query_has_no_keywords_and_does_not_fail(corpus: Document, tenant: Any) -> None:
    assert search_chunks(tenant=tenant, query="?!...", mode="keyword") == []
    hybrid = search_chunks(tenant=tenant, query="?!...", mode="hybrid")
    assert all(hit.retrievers == ("semantic",) for hit in hybrid)


def test_viewers_can_search(client_for: Any, tenant: Any, corpus: Document) -> None:
    from tests.factories import UserFactory

    viewer = UserFactory(tenant=tenant, role=User.Role.VIEWER)
    assert client_for(viewer).post(SEARCH_URL, {"query": QUERY}, format="json").status_code == 200


def test_search_requires_authentication(anon_api: APIClient) -> None:
    assert_requires_auth(SEARCH_URL, anon_api, verbs=("post",))


def _plan(tenant: Any, exact_max: int, settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """EXPLAIN ANALYZE of the semantic statement as search_chunks ran it."""
    from tests.documents.search_sql import explain_semantic

    settings.SEARCH_EXACT_MAX_CHUNKS = exact_max
    with monkeypatch.context() as patch:
        plans = explain_semantic(patch)
        search_chunks(tenant=tenant, query=QUERY, mode="semantic")
    return plans[0]


def test_plans_exact_for_small_tenants_and_hnsw_otherwise(
    corpus: Document, tenant: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from documents.vectors import index_name
    from tests.documents.search_sql import ran

    hnsw = index_name("hashing-v1", settings.EMBEDDING_DIMENSIONS)  # the embedder's own partial index
    exact = _plan(tenant, 10_000, settings, monkeypatch)
    assert not ran(exact, hnsw) and any("Sort" in row[0] and "never executed" not in row[0] for row in exact)
    approximate = _plan(tenant, 0, settings, monkeypatch)
    assert ran(approximate, hnsw)
    # Only the chosen plan is sent: nothing planned that never runs (two plans behind one-time filters cost
    # planning both, and a parallel exact plan started its workers even when its filter was false).
    assert not any("never executed" in row[0] for row in exact + approximate)


def _settings_at_the_vector_query(tenant: Any, monkeypatch: pytest.MonkeyPatch, **search: Any) -> dict[str, str]:
    """The planner settings in force when the semantic statement runs (read in its batch, just before it)."""
    from tests.documents.search_sql import before_semantic

    read = (
        "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan'), "
        "current_setting('enable_sort')",
        [],
    )
    with monkeypatch.context() as patch:
        seen = before_semantic(patch, lambda _statement: read)
        search_chunks(tenant=tenant, query=QUERY, mode="semantic", **search)
    [(ef_search, iterative_scan, enable_sort)] = seen[0]
    return {"ef_search": ef_search, "iterative_scan": iterative_scan, "enable_sort": enable_sort}


def test_search_ef_search_reaches_the_filtered_vector_query(
    corpus: Document, tenant: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: SEARCH_EF_SEARCH is the HNSW scan's ef_search (at least top_k), with the iterative scan
    that keeps a tenant- or project-filtered search from coming back short."""
    settings.SEARCH_EXACT_MAX_CHUNKS = 0  # the HNSW plan
    settings.SEARCH_EF_SEARCH = 123
    seen = _settings_at_the_vector_query(tenant, monkeypatch, document_ids=[corpus.pk])
    assert seen == {"ef_search": "123", "iterative_scan": "relaxed_order", "enable_sort": "off"}
    settings.SEARCH_EF_SEARCH = 7
    assert _settings_at_the_vector_query(tenant, monkeypatch, top_k=40)["ef_search"] == "40"  # never below the depth
    settings.SEARCH_EXACT_MAX_CHUNKS = 10_000  # the exact plan sets none of them
    assert _settings_at_the_vector_query(tenant, monkeypatch)["enable_sort"] == "on"


def test_planner_settings_do_not_leak_out_of_the_search(corpus: Document, tenant: Any, settings: Any) -> None:
    settings.SEARCH_EXACT_MAX_CHUNKS = 0
    with transaction.atomic():
        search_chunks(tenant=tenant, query=QUERY, mode="hybrid")
        with connection.cursor() as cursor:
            cursor.execute("SHOW enable_sort")
            assert cursor.fetchone()[0] == "on"


def test_exact_or_approximate(db: None, settings: Any) -> None:
    from documents.search import use_exact

    settings.SEARCH_EXACT_MAX_CHUNKS = 2000
    assert use_exact(2000, 100_000, 20)  # few candidates
    assert not use_exact(10_000, 100_000, 20)  # a tenant holding a tenth of the table: HNSW finds them quickly
    assert use_exact(5_000, 10_000_000, 20)  # a needle in a big table: the iterative scan would give up first
    assert not use_exact(5_000, -1, 20)  # table never analysed: no estimate, trust the index


def _chunk_table_estimate(rows: float) -> None:
    """Set the planner's estimate of the chunk table's size (rolled back with the test's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE pg_class SET reltuples = %s WHERE oid = 'documents_chunk'::regclass", [rows])


def test_plan_search_counts_what_the_filters_leave_and_applies_the_plan_rule(
    corpus: Document, tenant: Any, other_tenant: Any, settings: Any
) -> None:
    from documents.search import SearchPlan, plan_search

    ready = Document.objects.filter(tenant=tenant, status=Document.Status.READY)
    total = sum(document.chunk_count for document in ready)
    assert total > corpus.chunk_count > 0
    assert plan_search(tenant=tenant) == SearchPlan(total, True)  # few chunks: exact
    assert plan_search(tenant=tenant, document_ids=[corpus.pk]) == SearchPlan(corpus.chunk_count, True)
    assert plan_search(tenant=tenant, project_id=uuid.uuid4()) == SearchPlan(0, True)
    assert plan_search(tenant=other_tenant) == SearchPlan(0, True)
    settings.SEARCH_EXACT_MAX_CHUNKS = 0  # past the few-chunks rule: the table's size decides
    # a table 500 times the candidates: at depth 20 the scan would find them (20 * 500 is not over 10000)
    _chunk_table_estimate(500.0 * total)
    assert plan_search(tenant=tenant) == SearchPlan(total, False)
    assert plan_search(tenant=tenant, depth=21) == SearchPlan(total, True)
    _chunk_table_estimate(-1)  # never analysed: no estimate, trust the index
    assert plan_search(tenant=tenant, depth=10_000) == SearchPlan(total, False)


def test_a_search_plans_at_its_own_depth(
    corpus: Document, tenant: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan statement gets the search's depth (a semantic search's top_k): with the table 500 times the
    candidates, the scan finds 20 within its budget (HNSW: it sets enable_sort off), not 21 (exact)."""
    settings.SEARCH_EXACT_MAX_CHUNKS = 0  # past the few-chunks rule: the table's size decides
    ready = Document.objects.filter(tenant=tenant, status=Document.Status.READY)
    _chunk_table_estimate(500.0 * sum(document.chunk_count for document in ready))
    assert _settings_at_the_vector_query(tenant, monkeypatch, top_k=20)["enable_sort"] == "off"
    assert _settings_at_the_vector_query(tenant, monkeypatch, top_k=21)["enable_sort"] == "on"
