"""X-Request-ID validation and echo, and the structured request events (method, path, status, ...)."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
from typing import Any

import pytest
import structlog
from django.test import Client
from rest_framework.test import APIClient

from config.logging import build_logging
from tests.crosstenant import assert_envelope
from tests.subprocesses import BASE_DIR

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.foundation.urls")]


@pytest.mark.parametrize(
    "request_id",
    ["0f8fc5a2-4c59-4a39-9d0c-7d1f3f9c2b11", "01HZX3K5T8Q2W9E7R6Y4U1I0OP", "req.abc_123:edge-7", "a" * 128],
)
def test_a_well_formed_request_id_is_echoed(client: Client, request_id: str) -> None:
    response = client.get("/api/v1/health/live", HTTP_X_REQUEST_ID=request_id)
    assert response["X-Request-ID"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "short",
        "a" * 129,
        "has space in it",
        "semi;colon-xxxxxx",
        "-leading-dash-xxx",
        "new\nline-xxxxxx",
        "é-unicode-xxxxxx",
        "",
    ],
)
def test_a_malformed_request_id_is_replaced(client: Client, request_id: str) -> None:
    response = client.get("/api/v1/health/live", HTTP_X_REQUEST_ID=request_id)
    echoed = response["X-Request-ID"]
    assert echoed != request_id
    assert len(echoed) == 32 and int(echoed, 16) >= 0


def test_each_request_gets_its_own_id_and_errors_quote_it(client: Client) -> None:
    first = client.get("/nope")
    second = client.get("/nope")
    assert first["X-Request-ID"] != second["X-Request-ID"]
    error = assert_envelope(first, 404, "not_found")
    assert error["request_id"] == first["X-Request-ID"]
    given = client.get("/nope", HTTP_X_REQUEST_ID="client-chosen-id-42")
    assert given.json()["error"]["request_id"] == "client-chosen-id-42"


def test_static_files_get_the_request_id_and_the_security_headers(client: Client) -> None:
    response = client.get(
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css", HTTP_X_REQUEST_ID="static-req-0001"
    )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "static-req-0001"
    assert response["X-Content-Type-Options"] == "nosniff"


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg.get("event") == name]


def test_one_line_per_request_without_log_request_started_carrying_everything(
    caplog: pytest.LogCaptureFixture, api: APIClient, user: Any, tenant: Any, settings: Any
) -> None:
    settings.DJANGO_STRUCTLOG_STATUS_START_LOG_LEVEL = logging.DEBUG  # what LOG_REQUEST_STARTED=false sets
    caplog.set_level(logging.INFO, logger="django_structlog")
    response = api.get("/api/v1/_t/echo?x=1", HTTP_X_REQUEST_ID="trace-me-12346", HTTP_USER_AGENT="probe/1.0")
    assert response.status_code == 200

    assert _events(caplog, "request_started") == []
    [finished] = _events(caplog, "request_finished")
    assert (finished["method"], finished["path"], finished["status"]) == ("GET", "/api/v1/_t/echo", 200)
    assert (finished["request_id"], finished["tenant"], finished["user"]) == (
        "trace-me-12346",
        tenant.slug,
        str(user.pk),
    )
    assert finished["user_agent"] == "probe/1.0"
    assert isinstance(finished["duration_ms"], float)


def test_request_events_carry_method_path_status_duration_ids_tenant_and_user(
    caplog: pytest.LogCaptureFixture, api: APIClient, user: Any, tenant: Any
) -> None:
    caplog.set_level(logging.INFO, logger="django_structlog")
    response = api.get("/api/v1/_t/echo?x=1", HTTP_X_REQUEST_ID="trace-me-12345")
    assert response.status_code == 200 and response.json() == {"user": str(user.pk)}

    [started] = _events(caplog, "request_started")
    assert started["method"] == "GET" and started["path"] == "/api/v1/_t/echo"
    assert started["request_id"] == "trace-me-12345"
    assert started["tenant"] == tenant.slug  # the header, before the tenant is resolved

    [finished] = _events(caplog, "request_finished")
    assert finished["status"] == 200
    assert finished["method"] == "GET" and finished["path"] == "/api/v1/_t/echo"
    assert finished["request_id"] == "trace-me-12345"
    assert finished["tenant"] == tenant.slug
    assert finished["user"] == str(user.pk)
    assert isinstance(finished["duration_ms"], float) and 0 <= finished["duration_ms"] < 10_000


def test_anonymous_and_failed_requests_are_logged_too(caplog: pytest.LogCaptureFixture, client: Client) -> None:
    caplog.set_level(logging.INFO, logger="django_structlog")
    client.get("/api/v1/_t/echo")  # no tenant: 400 from the tenant middleware
    [finished] = _events(caplog, "request_finished")
    assert finished["status"] == 400 and finished["tenant"] is None and finished["user"] is None

    caplog.clear()
    Client(raise_request_exception=False).get("/api/v1/health/live", HTTP_X_TENANT_ID="x")
    [finished] = _events(caplog, "request_finished")
    assert finished["status"] == 200


def test_a_crash_outside_drf_logs_request_failed_with_duration(caplog: pytest.LogCaptureFixture, tenant: Any) -> None:
    caplog.set_level(logging.INFO, logger="django_structlog")
    Client(raise_request_exception=False, HTTP_X_TENANT_ID=tenant.slug).get("/api/v1/_t/django-boom")
    [failed] = _events(caplog, "request_failed")
    assert failed["status"] == 500 and failed["path"] == "/api/v1/_t/django-boom"
    assert failed["duration_ms"] is not None


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_log_format_and_level(log_format: str, capsys: pytest.CaptureFixture[str], settings: Any) -> None:
    config = build_logging(log_format, "INFO")
    try:
        logging.config.dictConfig(config)
        log = structlog.get_logger("documind.test")
        with structlog.contextvars.bound_contextvars(request_id="fmt-test-0001"):
            log.info("hello_event", answer=42)
            log.debug("hidden_event")
        err = capsys.readouterr().err.strip().splitlines()
        lines = [line for line in err if "hello_event" in line]
        assert len(lines) == 1 and not any("hidden_event" in line for line in err)
        if log_format == "json":
            record = json.loads(lines[0])
            assert record["event"] == "hello_event" and record["answer"] == 42
            assert record["request_id"] == "fmt-test-0001" and record["level"] == "info"
            assert "timestamp" in record
        else:
            assert "request_id=fmt-test-0001" in lines[0] and "answer=42" in lines[0]
    finally:
        logging.config.dictConfig(build_logging("console", settings.LOG_LEVEL))


@pytest.mark.parametrize(("value", "level"), [(None, "INFO"), ("false", "DEBUG"), ("true", "INFO")])
def test_log_request_started_sets_the_start_events_level(
    subprocess_env: dict[str, str], value: str | None, level: str
) -> None:
    env = {k: v for k, v in subprocess_env.items() if k != "LOG_REQUEST_STARTED"}
    if value is not None:
        env["LOG_REQUEST_STARTED"] = value
    script = (
        "import logging, django; django.setup()\n"
        "from django_structlog.app_settings import app_settings\n"
        "print(logging.getLevelName(app_settings.STATUS_START_LOG_LEVEL))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == level
