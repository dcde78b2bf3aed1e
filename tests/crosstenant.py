"""The reusable cross-tenant check every API test module uses.

``assert_isolated(url, owner_client, foreign_client)`` proves that an object reachable by its owner is
a 404 for an authenticated user of another tenant on every verb, and ``assert_requires_auth`` that
anonymous requests are 401.
"""

from __future__ import annotations

from typing import Any

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


def assert_isolated(url: str, owner: APIClient, foreign: APIClient, *, verbs: tuple[str, ...] = VERBS,
                    body: dict[str, Any] | None = None, owner_status: int = 200) -> None:
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
