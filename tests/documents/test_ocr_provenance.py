"""Where a hit's text came from reaches its readers: search results and chat citations carry the
chunk's ``source`` and, for OCR text, its confidence (issue 11); text-layer hits carry null.

A CCITT G4 scan is ingested for real (sandboxed extraction, then rapidocr in the OCR child), beside a
text PDF; then searched over the REST API and asked about over the chat's REST API (the extractive
provider, whose citations come from the same builder as the socket's ``chat.end`` and the SSE stream).
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import ChatSession
from documents.models import Chunk, Document
from documents.search import search_chunks
from documents.serializers import SearchResponseSerializer, search_response
from tests.documents import hostile
from tests.documents.conftest import KNOWN_SENTENCE, SEARCH_URL, known_pages
from tests.documents.pdfs import make_pdf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCAN_LINES = ["The lighthouse keeper logged eleven storms.", "Lamp oil is ordered every spring."]
SESSIONS = "/api/v1/chat/sessions/"


@pytest.fixture
def scanned_and_text(ready_document: Any) -> tuple[Document, Document]:
    scan = ready_document(hostile.ccitt_scan([SCAN_LINES]), "scan.pdf")
    text = ready_document(make_pdf(known_pages()), "text.pdf")
    assert (scan.status, text.status) == (Document.Status.READY, Document.Status.READY)
    return scan, text


def only_hit(api: APIClient, query: str, document: Document) -> dict[str, Any]:
    response = api.post(SEARCH_URL, {"query": query, "mode": "keyword", "top_k": 5}, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert results and {hit["document_id"] for hit in results} == {str(document.pk)}, results
    return results[0]


def test_search_hits_carry_the_ocr_confidence_of_scanned_text_and_null_for_the_text_layer(
    api: APIClient, scanned_and_text: tuple[Document, Document], tenant: Any
) -> None:
    scan, text = scanned_and_text
    [chunk] = Chunk.objects.filter(document=scan)
    assert chunk.source == "ocr" and chunk.ocr_confidence is not None

    ocr_hit = only_hit(api, "lighthouse keeper storms", scan)
    assert ocr_hit["source"] == "ocr"
    assert 0 < ocr_hit["ocr_confidence"] <= 1 and ocr_hit["ocr_confidence"] == pytest.approx(chunk.ocr_confidence)

    text_hit = only_hit(api, "zeppelin maintenance budget", text)
    assert text_hit["source"] == "text" and text_hit["ocr_confidence"] is None

    # the hand-built answer is still what the documented serializer gives, with both kinds of hit
    hits = search_chunks(tenant=tenant, query="lighthouse zeppelin", mode="keyword", top_k=5)
    assert {hit.source for hit in hits} == {"ocr", "text"}
    documented = SearchResponseSerializer({"query": "q", "mode": "keyword", "top_k": 5, "results": hits}).data
    assert search_response(query="q", mode="keyword", top_k=5, hits=hits) == documented


def test_chat_citations_carry_the_ocr_confidence_of_scanned_text_and_null_for_the_text_layer(
    api: APIClient, scanned_and_text: tuple[Document, Document], user: Any, settings: Any
) -> None:
    settings.CHAT_PROVIDER = "extractive"
    scan, text = scanned_and_text
    [chunk] = Chunk.objects.filter(document=scan)

    def citations(question: str, document: Document) -> list[dict[str, Any]]:
        session = ChatSession.objects.create(tenant=user.tenant, user=user)
        response = api.post(
            f"{SESSIONS}{session.pk}/messages/",
            {"content": question, "document_ids": [str(document.pk)]},
            format="json",
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "completed" and body["citations"], body
        return body["citations"]

    [ocr_citation, *_] = citations("How many storms did the lighthouse keeper log?", scan)
    assert ocr_citation["document_id"] == str(scan.pk) and ocr_citation["source"] == "ocr"
    assert 0 < ocr_citation["ocr_confidence"] <= 1
    assert ocr_citation["ocr_confidence"] == pytest.approx(chunk.ocr_confidence)

    text_citation = citations("Who approved the zeppelin maintenance budget?", text)[0]
    assert text_citation["document_id"] == str(text.pk) and text_citation["source"] == "text"
    assert "ocr_confidence" in text_citation and text_citation["ocr_confidence"] is None
    assert KNOWN_SENTENCE.split()[1] in text_citation["snippet"]
