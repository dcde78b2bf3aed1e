"""Error messages that tell the client what to do: invalid choices name the valid ones."""

from __future__ import annotations

from typing import Any

import pytest

from tests.crosstenant import assert_envelope

pytestmark = pytest.mark.django_db


def test_an_invalid_choice_in_a_body_lists_the_valid_ones(api: Any) -> None:
    error = assert_envelope(
        api.post("/api/v1/search/", {"query": "x", "mode": "fuzzy"}, format="json"), 400, "validation_error"
    )
    assert error["message"] == 'mode: "fuzzy" is not a valid choice; valid choices: semantic, keyword, hybrid.'
    assert error["details"]["fields"]["mode"] == [error["message"].removeprefix("mode: ")]


@pytest.mark.parametrize("query", ["?status=bogus", "?status=pending&status=bogus"])
def test_an_invalid_choice_in_a_filter_lists_the_valid_ones(api: Any, query: str) -> None:
    error = assert_envelope(api.get("/api/v1/tasks/" + query), 400, "validation_error")
    assert (
        '"bogus" is not a valid choice; valid choices: pending, processing, completed, failed, cancelled'
        in (error["message"])
    ), error
