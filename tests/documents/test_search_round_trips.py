"""A search is one round trip to PostgreSQL (issue #16): its statements go as one batch, in the caller's
transaction or without one, and leave no planner setting behind; a stale copy of the tenant costs a
second one only when its embedder has changed. Round trips are counted on the wire (libpq's trace):
before, a hybrid search made 11 in the HNSW plan and 7 in the exact one, a keyword search 5."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from documents.search import search_chunks
from tenants.models import Tenant
from tests.documents.conftest import KNOWN_SENTENCE
from tests.documents.search_sql import round_trips
from tests.documents.test_search import QUERY, corpus  # noqa: F401  (the fixture)

MODES = ["semantic", "keyword", "hybrid"]
SETTINGS_SQL = (
    "SELECT current_setting('enable_sort'), current_setting('hnsw.ef_search'), "
    "current_setting('hnsw.iterative_scan'), current_setting('documind.search_exact', true)"
)


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("exact_max", [10_000, 0], ids=["exact", "hnsw"])
def test_a_search_is_one_round_trip(tenant: Tenant, settings: Any, mode: str, exact_max: int) -> None:
    settings.SEARCH_EXACT_MAX_CHUNKS = exact_max
    with round_trips() as counted:
        hits = search_chunks(tenant=tenant, query=QUERY, mode=mode, top_k=3)
    assert KNOWN_SENTENCE in hits[0].text
    assert counted == [1]


@pytest.mark.usefixtures("corpus")
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_batch_is_its_own_and_leaves_no_setting(tenant: Tenant, settings: Any) -> None:
    """In autocommit (the API's case) no BEGIN/COMMIT and no savepoint: the batch's implicit transaction
    scopes the planner settings, and the next statement on the connection sees the defaults."""
    settings.SEARCH_EXACT_MAX_CHUNKS = 0  # the HNSW plan, which sets them
    with connection.cursor() as cursor:
        cursor.execute(SETTINGS_SQL)
        before = cursor.fetchone()
    assert connection.get_autocommit()
    with round_trips() as counted:
        hits = search_chunks(tenant=tenant, query=QUERY, mode="hybrid", top_k=3)
    assert hits[0].retrievers == ("semantic", "keyword") and KNOWN_SENTENCE in hits[0].text
    assert counted == [1]
    with connection.cursor() as cursor:
        cursor.execute(SETTINGS_SQL)
        after = cursor.fetchone()
    assert after[:3] == before[:3]
    assert after[3] in ("", None)  # no plan recorded (a placeholder the batch made reads empty once reset)


@pytest.mark.usefixtures("corpus")
def test_a_stale_copy_of_the_tenant_searches_again_with_the_stored_embedder(tenant: Tenant) -> None:
    """The caller's copy names another embedder than the stored settings (a chat socket's copy after a
    switch): its vectors find nothing, the batch says so, and the search runs again with the stored one."""
    assert tenant.settings.get("embedder") in (None, "hashing")
    stale = Tenant.objects.get(pk=tenant.pk)
    stale.settings = {**stale.settings, "embedder": "local"}  # not saved: the database still says hashing
    with round_trips() as counted:
        hits = search_chunks(tenant=stale, query=QUERY, mode="semantic", top_k=3)
    assert KNOWN_SENTENCE in hits[0].text
    assert counted == [2]
    with round_trips() as counted:
        search_chunks(tenant=tenant, query=QUERY, mode="semantic", top_k=3)  # a current copy: once
    assert counted == [1]
