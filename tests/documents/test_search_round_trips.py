"""A search is at most two round trips to PostgreSQL (issue #16), a keyword search one: keyword and plan
statements, then the semantic statement of the chosen plan only, each as one batch, in the caller's
transaction or without one, leaving no planner setting behind; a stale copy of the tenant costs nothing
more (the first round trip reads the stored settings before the query is embedded). Round trips are
counted on the wire (libpq's trace): at f47ff10 a hybrid search made 11 in the HNSW plan and 7 in the
exact one, a keyword search 5. (069e3a2 made every search one round trip with both plans in one
statement, which was slower: PostgreSQL planned both and started the exact plan's parallel workers.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from documents.search import search_chunks
from tenants.models import Tenant
from tests.documents.conftest import KNOWN_SENTENCE
from tests.documents.search_sql import backend_messages, round_trips
from tests.documents.test_search import QUERY, corpus  # noqa: F401  (the fixture)

MODES = ["semantic", "keyword", "hybrid"]
SETTINGS_SQL = (
    "SELECT current_setting('enable_sort'), current_setting('hnsw.ef_search'), "
    "current_setting('hnsw.iterative_scan'), current_setting('documind.search_exact', true)"
)


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("exact_max", [10_000, 0], ids=["exact", "hnsw"])
def test_a_search_is_two_round_trips_a_keyword_search_one(
    tenant: Tenant, settings: Any, mode: str, exact_max: int
) -> None:
    settings.SEARCH_EXACT_MAX_CHUNKS = exact_max
    with round_trips() as counted:
        hits = search_chunks(tenant=tenant, query=QUERY, mode=mode, top_k=3)
    assert KNOWN_SENTENCE in hits[0].text
    assert counted == [1 if mode == "keyword" else 2]
    # and the statements the mode and the plan need, no other: keyword; plan, settings (HNSW), semantic
    with backend_messages("RowDescription") as statements:
        search_chunks(tenant=tenant, query=QUERY, mode=mode, top_k=3)
    needed = {"keyword": 1, "semantic": 2, "hybrid": 3}[mode] + (mode != "keyword" and exact_max == 0)
    assert statements == [needed]


@pytest.mark.usefixtures("corpus")
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_each_batch_is_its_own_and_leaves_no_setting(tenant: Tenant, settings: Any) -> None:
    """In autocommit (the API's case) no BEGIN/COMMIT and no savepoint: the second batch's implicit
    transaction scopes the planner settings, and the next statement on the connection sees the defaults."""
    settings.SEARCH_EXACT_MAX_CHUNKS = 0  # the HNSW plan, which sets them
    with connection.cursor() as cursor:
        cursor.execute(SETTINGS_SQL)
        before = cursor.fetchone()
    assert connection.get_autocommit()
    with round_trips() as counted:
        hits = search_chunks(tenant=tenant, query=QUERY, mode="hybrid", top_k=3)
    assert hits[0].retrievers == ("semantic", "keyword") and KNOWN_SENTENCE in hits[0].text
    assert counted == [2]
    with connection.cursor() as cursor:
        cursor.execute(SETTINGS_SQL)
        after = cursor.fetchone()
    assert after[:3] == before[:3]
    assert after[3] in ("", None)  # no custom setting either


@pytest.mark.usefixtures("corpus")
def test_a_stale_copy_of_the_tenant_searches_with_the_stored_embedder(tenant: Tenant) -> None:
    """The caller's copy names another embedder than the stored settings (a chat socket's copy after a
    switch): the query is embedded with the stored one, read in the first round trip, at no extra cost."""
    assert tenant.settings.get("embedder") in (None, "hashing")
    stale = Tenant.objects.get(pk=tenant.pk)
    stale.settings = {**stale.settings, "embedder": "local"}  # not saved: the database still says hashing
    with round_trips() as counted:
        hits = search_chunks(tenant=stale, query=QUERY, mode="semantic", top_k=3)
    assert KNOWN_SENTENCE in hits[0].text
    assert counted == [2]
    with round_trips() as counted:
        search_chunks(tenant=tenant, query=QUERY, mode="semantic", top_k=3)  # a current copy: the same
    assert counted == [2]
