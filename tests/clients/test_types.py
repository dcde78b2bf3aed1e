"""The Python client's response types name the fields the server sends (no drift between the two)."""

from __future__ import annotations

from typing import Any

import pytest
from documind_client import types

from chat.serializers import CitationSerializer
from documents.serializers import SearchHitSerializer


@pytest.mark.parametrize(
    ("typed", "serializer"),
    [(types.SearchHit, SearchHitSerializer), (types.Citation, CitationSerializer)],
    ids=["search-hit", "citation"],
)
def test_the_clients_types_have_the_servers_fields(typed: Any, serializer: Any) -> None:
    assert set(typed.__annotations__) == set(serializer().fields)
