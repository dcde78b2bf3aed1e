"""Credentials in URLs never reach a log line, whether a field holds text or an object."""

from __future__ import annotations

from django.test import RequestFactory

from config.logging import redact_secrets, redact_url


def test_redact_url() -> None:
    assert redact_url("GET /ws/chat/?token=eyJ.abc.def&x=1") == "GET /ws/chat/?token=[redacted]&x=1"
    assert redact_url("/a?x=1&access_token=s3cr3t") == "/a?x=1&access_token=[redacted]"
    assert redact_url("/a?tokens=1&monkey=2") == "/a?tokens=1&monkey=2"  # other parameters stay


def test_every_field_is_redacted_objects_included() -> None:
    request = RequestFactory().get("/nope/?token=eyJ.secret.sig")
    event = redact_secrets(None, "warning", {"event": "Not Found: /nope/", "request": request, "status_code": 404})
    assert "eyJ.secret.sig" not in str(event) and "token=[redacted]" in event["request"]
    assert event["status_code"] == 404
