"""Every API view is in the scope table (a decision, not an accident), and unknown views refuse keys."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from integrations.scopes import ENDPOINT_SCOPES, key_allows, required_scope


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
