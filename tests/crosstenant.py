"""The reusable cross-tenant check every API test module uses.

``assert_isolated(url, owner_client, foreign_client)`` proves that an object reachable by its owner is
a 404 for an authenticated user of another tenant on every verb, and ``assert_requires_auth`` that
anonymous requests are 401. ``assert_isolated_resource`` does the whole set for one resource (the
NetBox ``APIViewTestCases`` idea): anonymous 401 on list and detail, the owner's 200, the other
tenant's 404 on every verb and absence from its list, and a query-count bound on the list that does
not grow with the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

VERBS = ("get", "put", "patch", "delete", "post")


def assert_envelope(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert ``response`` is ``status`` with the error envelope (and ``code`` when given)."""
    assert response.status_code == status, (response.status_code, getattr(response, "content", b"")[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"type", "message", "details", "request_id"} <= set(error), error
    assert error["request_id"], error
    if code is not None:
        assert error["type"] == code, error
    return error


def assert_isolated(
    url: str,
    owner: APIClient,
    foreign: APIClient,
    *,
    verbs: tuple[str, ...] = VERBS,
    body: dict[str, Any] | None = None,
    owner_status: int = 200,
) -> None:
    """The owner gets ``owner_status`` on GET; the other tenant's user gets 404 on every verb."""
    response = owner.get(url)
    assert response.status_code == owner_status, (url, response.status_code, response.content[:300])
    for verb in verbs:
        response = getattr(foreign, verb)(url, body or {}, format="json")
        if verb == "post" and response.status_code == 405:
            continue
        assert_envelope(response, 404, None)
    # and the object is untouched for its owner
    assert owner.get(url).status_code == owner_status


def assert_requires_auth(url: str, anon: APIClient, *, verbs: tuple[str, ...] = ("get",)) -> None:
    for verb in verbs:
        assert_envelope(getattr(anon, verb)(url, {}, format="json"), 401, "not_authenticated")


def _ids(response: Any) -> set[str]:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) and "results" in body else body
    return {str(row["id"]) for row in rows}


def assert_list_queries(
    url: str, client: APIClient, *, max_queries: int, add_rows: Callable[[], Any] | None = None
) -> int:
    """GET ``url`` within ``max_queries`` queries; after ``add_rows()`` (more rows) the count must not grow.

    Counted: the request's own queries, including the tenant and user lookups. Not counted: the
    rate-limit counters when the cache is the database (Redis in production) and savepoints, which
    would make the bound depend on the cache backend. The "does not grow" check catches N+1 queries.
    """
    with CaptureQueriesContext(connection) as first:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    counted = _own_queries(first)
    assert len(counted) <= max_queries, (url, len(counted), [sql[:120] for sql in counted])
    if add_rows is not None:
        add_rows()
        with CaptureQueriesContext(connection) as second:
            assert client.get(url).status_code == 200
        again = _own_queries(second)
        assert len(again) <= len(counted), ("query count grows with rows", url, counted, again)
    return len(counted)


def _own_queries(context: CaptureQueriesContext) -> list[str]:
    cache_table = (
        settings.CACHES["default"].get("LOCATION") if "DatabaseCache" in settings.CACHES["default"]["BACKEND"] else None
    )
    return [
        q["sql"]
        for q in context.captured_queries
        if not q["sql"].lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT"))
        and not (cache_table and f'"{cache_table}"' in q["sql"])
    ]


def assert_isolated_resource(
    *,
    list_url: str,
    detail_url: str,
    obj_id: Any,
    owner: APIClient,
    foreign: APIClient,
    anon: APIClient,
    verbs: tuple[str, ...] = VERBS,
    body: dict[str, Any] | None = None,
    max_list_queries: int = 10,
    add_rows: Callable[[], Any] | None = None,
) -> None:
    """Everything a tenant-data resource must satisfy, in one call.

    * anonymous (tenant header, no token): 401 ``not_authenticated`` on the list and the object;
    * the owner lists it (within ``max_list_queries``, not growing after ``add_rows``) and GETs it;
    * the other tenant's user gets 404 on every verb of the object and does not see it in its list.
    """
    assert_requires_auth(list_url, anon)
    assert_requires_auth(detail_url, anon, verbs=tuple(v for v in verbs if v != "post") or ("get",))
    assert str(obj_id) in _ids(owner.get(list_url)), "the owner's list misses its own object"
    assert_list_queries(list_url, owner, max_queries=max_list_queries, add_rows=add_rows)
    foreign_list = foreign.get(list_url)
    assert foreign_list.status_code == 200, (foreign_list.status_code, foreign_list.content[:300])
    assert str(obj_id) not in _ids(foreign_list), "another tenant's list shows the object"
    assert_isolated(detail_url, owner, foreign, verbs=verbs, body=body)
