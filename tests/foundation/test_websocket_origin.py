"""Which WebSocket handshakes ``config.websocket_origin`` refuses for their Origin (no server needed)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from config.websocket_origin import refusal_reason


def scope(origin: str | None, host: str = "api.example.com") -> dict:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return {"type": "websocket", "headers": headers}


@pytest.mark.parametrize(
    ("origin", "host", "reason"),
    [
        (None, "api.example.com", None),  # scripts and servers send none
        ("https://api.example.com", "api.example.com", None),  # the server's own page
        ("https://api.example.com:443", "api.example.com", None),
        ("http://api.example.com:8000", "api.example.com:8000", None),
        ("https://app.example.com", "api.example.com", None),  # listed
        ("https://APP.example.com:443/", "api.example.com", None),
        ("https://app.example.com:8443", "api.example.com", "origin_not_allowed"),  # another port
        ("http://api.example.com:8001", "api.example.com:8000", "origin_not_allowed"),
        ("https://evil.example", "api.example.com", "origin_not_allowed"),
        ("https://api.example.com.evil.example", "api.example.com", "origin_not_allowed"),
        ("null", "api.example.com", "origin_null"),
        ("not a url", "api.example.com", "origin_malformed"),
        ("https://evil.example", "", "origin_not_allowed"),
    ],
)
def test_refusal_reason(origin: str | None, host: str, reason: str | None) -> None:
    with override_settings(WEBSOCKET_ALLOWED_ORIGINS=["https://app.example.com"]):
        assert refusal_reason(scope(origin, host)) == reason


def test_a_star_allows_every_origin() -> None:
    with override_settings(WEBSOCKET_ALLOWED_ORIGINS=["*"]):
        assert refusal_reason(scope("https://evil.example")) is None


def test_the_default_is_the_cors_origins() -> None:
    from django.conf import settings

    assert settings.WEBSOCKET_ALLOWED_ORIGINS == settings.CORS_ALLOWED_ORIGINS
