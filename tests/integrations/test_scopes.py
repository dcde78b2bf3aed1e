"""Every API view is in the scope table (a decision, not an accident), unknown views refuse keys, and every
operation of the OpenAPI schema enforces its scope on real keys (403 ``insufficient_scope`` without it)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.test import APIClient
from rest_framework.views import APIView

from integrations.models import Scope
from integrations.scopes import ANY, ENDPOINT_SCOPES, key_allows, required_scope
from tests.api_keys import key_client
from tests.crosstenant import assert_envelope


def _views(patterns: list[Any]) -> set[type]:
    found: set[type] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found |= _views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            klass = getattr(pattern.callback, "cls", None)
            if klass is not None and issubclass(klass, APIView):
                found.add(klass)
    return found


def test_every_authenticating_api_view_has_a_scope_decision() -> None:
    missing = []
    for klass in _views(get_resolver().url_patterns):
        if not klass().get_authenticators():  # public views (sign-in, health) take no credentials
            continue
        name = f"{klass.__module__}.{klass.__qualname__}"
        if name not in ENDPOINT_SCOPES:
            missing.append(name)
    assert not missing, f"API views without a scope decision in integrations/scopes.py: {missing}"


def test_unknown_view_refuses_every_key() -> None:
    class Unlisted:
        pass

    class Everything:
        def has_scope(self, scope: str) -> bool:
            return True

    assert required_scope(Unlisted(), "GET") is None
    assert not key_allows(Everything(), required_scope(Unlisted(), "GET"))


# --- every operation of the OpenAPI schema, with real keys -----------------------------------------

ALL_SCOPES = [scope.value for scope in Scope]
# Views that serve the API's own description: routed, but not operations of the schema they serve.
SCHEMA_VIEWS = {"SpectacularAPIView", "SpectacularSwaggerView", "SpectacularSwaggerSplitView", "SpectacularRedocView"}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # the schema's path, e.g. /api/v1/documents/{id}/
    security: tuple[str, ...]  # the credential schemes the schema lists for it (not the tenant header)

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def schema_operations() -> list[Operation]:
    """Every operation of the OpenAPI schema as drf-spectacular generates it (what /api/v1/schema/ serves)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for template, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                schemes = tuple(
                    sorted({name for rule in operation.get("security", []) for name in rule} - {"tenantHeader"})
                )
                found.append(Operation(method.upper(), template, schemes))
    return found


OPERATIONS = schema_operations()


def concrete(template: str) -> tuple[str, type]:
    """``template`` with a fresh id in each parameter, and the view class the URL resolver routes it to."""
    path = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), template)
    match = resolve(path)
    klass = getattr(match.func, "cls", None) or getattr(match.func, "view_class", None)
    assert klass is not None, f"{template} does not route to a class-based view"
    return path, klass


def call(raw: str | None, method: str, path: str, body: Any) -> Any:
    client = key_client(raw) if raw else APIClient(HTTP_X_TENANT_ID="acme")
    return getattr(client, method.lower())(path, body, format="json")


def test_every_authenticating_view_is_in_the_schema() -> None:
    """So that the parametrised test below, which walks the schema, reaches every view a key can."""
    in_schema = {concrete(op.template)[1] for op in OPERATIONS}
    hidden = [
        f"{k.__module__}.{k.__qualname__}"
        for k in _views(get_resolver().url_patterns)
        if k().get_authenticators() and k not in in_schema and k.__name__ not in SCHEMA_VIEWS
    ]
    assert not hidden, f"views a key can reach that the OpenAPI schema (and so this test) leaves out: {hidden}"


@pytest.mark.django_db
@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
def test_every_schema_operation_enforces_its_scope(operation: Operation, make_key: Any) -> None:
    """Each operation with one key per scope: 403 ``insufficient_scope`` without the scope the table names,
    never 401/403 with it. Operations the schema documents for people only (bearer, no ``apiKeyAuth``) refuse
    even a key with every scope. Public operations (sign-in flows, health: no security scheme) take no
    credentials: a key there is ignored, the answer is the anonymous one (a key never becomes a session)."""
    path, klass = concrete(operation.template)
    keys = {scope: make_key([scope]) for scope in ALL_SCOPES}
    key, everything = make_key(ALL_SCOPES)
    # what a script holding only a key could send to a sign-in flow: the key itself as each secret
    body = {"email": key.user.email, "password": everything, "refresh": everything, "code": "123456"}
    if not operation.security:  # public
        assert not klass().get_authenticators(), f"{operation}: authenticates but documents no security"
        with_key, anonymous = call(everything, operation.method, path, body), call(None, operation.method, path, body)
        assert with_key.status_code == anonymous.status_code, (str(operation), with_key.content[:300])
        if with_key.status_code < 300 and with_key["Content-Type"] == "application/json":
            assert "access" not in with_key.json(), str(operation)  # no session was issued
        if anonymous.status_code >= 400:
            assert with_key.json()["error"]["type"] == anonymous.json()["error"]["type"]
        return

    read, write = ENDPOINT_SCOPES[f"{klass.__module__}.{klass.__qualname__}"]
    required = read if operation.method in ("GET", "HEAD", "OPTIONS") else write
    assert ("apiKeyAuth" in operation.security) == (required is not None), f"{operation}: schema and table disagree"
    if required is None:  # people only (their sessions, their password, minting keys)
        error = assert_envelope(call(everything, operation.method, path, {}), 403, "insufficient_scope")
        assert "cannot use" in error["message"], error
        return
    for scope, (_, raw) in keys.items():
        response = call(raw, operation.method, path, {})
        if required == ANY or scope == required:
            assert response.status_code not in (401, 403), (str(operation), scope, response.content[:300])
        else:
            error = assert_envelope(response, 403, "insufficient_scope")
            assert f"'{required}'" in error["message"], error
    assert call(everything, operation.method, path, {}).status_code not in (401, 403), str(operation)
