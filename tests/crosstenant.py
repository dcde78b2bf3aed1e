"""The reusable cross-tenant checks every API test module uses.

:class:`IsolatedResourceTests` is the mixin every tenant-data resource's tests inherit (the NetBox
``APIViewTestCases`` idea): a test class names its list URL and how to make an object, and gets four
tests — anonymous 401 on list and detail, the owner's 200, the other tenant's 404 on every verb and
absence from its list, and a query-count bound on the list that does not grow with the number of rows.

The helpers below it are for the extra routes of a resource: ``assert_isolated(url, owner_client,
foreign_client)`` proves that an object reachable by its owner is a 404 for an authenticated user of
another tenant on every verb, ``assert_requires_auth`` that anonymous requests are 401.
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


class IsolatedResourceTests:
    """Mixin of a resource's API tests: inherit it in a ``Test...`` class and set

    * ``list_url``: the list endpoint;
    * ``make_object(self, owner)``: a new object of ``owner`` (a user of the ``acme`` tenant); returns it;
    * optionally ``detail_url(self, obj)`` (default ``<list_url><obj.pk>/``), ``verbs`` tried by the
      other tenant, ``foreign_body`` (what it sends), ``max_list_queries``, ``owner_role`` (the role
      of the owner, e.g. ``admin`` for admin-only resources) and ``check_unchanged(self, obj)``.

    Each check is its own test, so a failure names what leaks.
    """

    list_url: str
    verbs: tuple[str, ...] = VERBS
    foreign_body: dict[str, Any] | None = None
    max_list_queries: int = 10
    owner_role: str = "member"

    def make_object(self, owner: Any) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def detail_url(self, obj: Any) -> str:
        return f"{self.list_url}{obj.pk}/"

    def check_unchanged(self, obj: Any) -> None:
        """Called after the other tenant tried every verb: assert the object is as it was."""

    def _owner(self, tenant: Any) -> Any:
        from tests.factories import UserFactory

        return UserFactory(tenant=tenant, role=self.owner_role)

    def _foreign(self, other_tenant: Any) -> APIClient:
        from tests.conftest import make_client
        from tests.factories import UserFactory

        return make_client(UserFactory(tenant=other_tenant, role=self.owner_role))

    def test_anonymous_is_401(self, tenant: Any, anon_api: APIClient) -> None:
        obj = self.make_object(self._owner(tenant))
        assert_requires_auth(self.list_url, anon_api)
        assert_requires_auth(self.detail_url(obj), anon_api)

    def test_own_object_is_200_and_listed(self, tenant: Any) -> None:
        from tests.conftest import make_client

        owner = self._owner(tenant)
        obj = self.make_object(owner)
        client = make_client(owner)
        assert client.get(self.detail_url(obj)).status_code == 200
        assert str(obj.pk) in _ids(client.get(self.list_url)), "the owner's list misses its own object"

    def test_other_tenants_object_is_404(self, tenant: Any, other_tenant: Any) -> None:
        from tests.conftest import make_client

        owner = self._owner(tenant)
        obj = self.make_object(owner)
        foreign = self._foreign(other_tenant)
        assert_isolated(self.detail_url(obj), make_client(owner), foreign, verbs=self.verbs, body=self.foreign_body)
        foreign_list = foreign.get(self.list_url)
        assert foreign_list.status_code == 200, (foreign_list.status_code, foreign_list.content[:300])
        assert str(obj.pk) not in _ids(foreign_list), "another tenant's list shows the object"
        self.check_unchanged(obj)

    def test_list_query_count_is_bounded(self, tenant: Any) -> None:
        from tests.conftest import make_client

        owner = self._owner(tenant)
        self.make_object(owner)
        assert_list_queries(
            self.list_url,
            make_client(owner),
            max_queries=self.max_list_queries,
            add_rows=lambda: [self.make_object(owner) for _ in range(5)],
        )
