"""The health app: root, healthz, health, liveness and readiness (503 when a dependency is down)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from tests.crosstenant import assert_envelope

pytestmark = pytest.mark.django_db

CHECKS = {"database", "cache", "broker", "channel_layer"}


def dead_port() -> int:
    """A local TCP port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_root_describes_the_service(client: Client) -> None:
    assert client.get("/").json() == {
        "name": "DocuMind",
        "version": settings.APP_VERSION,
        "status": "ok",
        "docs_url": "/docs",
        "api_prefix": "/api/v1",
    }


@pytest.mark.parametrize("url", ["/healthz", "/api/v1/health"])
def test_health(client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": settings.APP_VERSION}


def test_liveness_uptime_increases(client: Client) -> None:
    first = client.get("/api/v1/health/live").json()
    time.sleep(0.02)
    second = client.get("/api/v1/health/live").json()
    assert first["status"] == second["status"] == "ok"
    assert 0 <= first["uptime_seconds"] < second["uptime_seconds"]


def test_health_endpoints_need_no_tenant_nor_token(client: Client) -> None:
    for url in ("/", "/healthz", "/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"):
        assert client.get(url, HTTP_AUTHORIZATION="Bearer garbage").status_code == 200, url


def test_readiness_names_every_check_with_status_and_latency(client: Client) -> None:
    response = client.get("/api/v1/health/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["status"] == "ok", (name, check)
        assert isinstance(check["latency_ms"], float) and check["latency_ms"] >= 0
    assert body["checks"]["database"]["pgvector"]


def _assert_unavailable(client: Client, failing: str) -> dict[str, Any]:
    response = client.get("/api/v1/health/ready")
    body = response.json()
    assert response.status_code == 503, body
    assert body["status"] == "unavailable"
    assert set(body["checks"]) == CHECKS
    assert body["checks"][failing]["status"] == "error" and body["checks"][failing]["error"]
    for name in CHECKS - {failing}:
        assert body["checks"][name]["status"] == "ok", (name, body["checks"][name])
    return body["checks"][failing]


def test_readiness_is_503_when_the_broker_is_down(client: Client) -> None:
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{dead_port()}/0"):
        failed = _assert_unavailable(client, "broker")
    assert failed["latency_ms"] < 10_000


def test_readiness_is_503_when_the_filesystem_broker_folder_is_gone(client: Client, tmp_path: Any) -> None:
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "data_folder_in": str(tmp_path / "missing")}
    with override_settings(CELERY_BROKER_URL="filesystem://localhost//", CELERY_BROKER_TRANSPORT_OPTIONS=options):
        failed = _assert_unavailable(client, "broker")
    assert "missing" in failed["error"]


def test_readiness_is_503_when_the_cache_is_down(client: Client) -> None:
    dead = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{dead_port()}/0",
        }
    }
    with override_settings(CACHES=dead):
        _assert_unavailable(client, "cache")


def test_readiness_is_503_when_the_channel_layer_is_down(client: Client) -> None:
    dead = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{dead_port()}/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=dead):
        _assert_unavailable(client, "channel_layer")


def test_readiness_is_503_without_pgvector(client: Client, django_db_blocker: Any) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT no_vector")
        cursor.execute("DROP EXTENSION vector CASCADE")
    try:
        failed = _assert_unavailable(client, "database")
        assert "pgvector" in failed["error"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK TO SAVEPOINT no_vector")


def test_readiness_does_not_reveal_hosts_ports_or_paths(client: Client, tmp_path: Any) -> None:
    """The endpoint is public: with DEBUG off a failure says which dependency and what kind of error,
    not the addresses, ports, folders or credentials in the exception's text (those go to the log)."""
    port = dead_port()
    dead_cache = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": f"redis://127.0.0.1:{port}/0"}
    }
    with override_settings(CACHES=dead_cache):
        failed = _assert_unavailable(client, "cache")
        body = client.get("/api/v1/health/ready").content.decode()
    assert str(port) not in body and "127.0.0.1" not in body, body
    assert failed["error"] == "ConnectionError", failed

    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "data_folder_in": str(tmp_path / "missing")}
    with override_settings(CELERY_BROKER_URL="filesystem://localhost//", CELERY_BROKER_TRANSPORT_OPTIONS=options):
        body = client.get("/api/v1/health/ready").content.decode()
    assert str(tmp_path) not in body, body

    with override_settings(CACHES=dead_cache, DEBUG=True):  # a developer sees the whole message
        assert str(port) in client.get("/api/v1/health/ready").json()["checks"]["cache"]["error"]


def test_health_errors_use_the_envelope(client: Client) -> None:
    assert_envelope(client.delete("/api/v1/health/ready"), 405, "method_not_allowed")


def test_readiness_is_503_when_the_postgres_channel_layer_cannot_reach_its_database(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded default's layer (PostgreSQL LISTEN/NOTIFY) on a server that is not there: 503 within
    the check's timeout, not a hang and not a false 200."""
    import channels_postgres.db

    # channels_postgres keeps one connection pool per process in a module global: start this broken
    # layer on a pool of its own, and give the working one back afterwards.
    monkeypatch.setattr(channels_postgres.db, "connection_pool", None)
    dead = {
        "default": {
            "BACKEND": "config.channel_layers.PostgresChannelLayer",
            "CONFIG": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "documind",
                "USER": "postgres",
                "PASSWORD": "",
                "HOST": "127.0.0.1",
                "PORT": str(dead_port()),
                "OPTIONS": {"connect_timeout": 2},
                "TIME_ZONE": None,
                "CONN_MAX_AGE": 0,
                "CONN_HEALTH_CHECKS": False,
                "AUTOCOMMIT": True,
                "PSYCOPG_OPTIONS": {"min_size": 1, "max_size": 2},
            },
        }
    }
    started = time.monotonic()
    with override_settings(CHANNEL_LAYERS=dead):
        failed = _assert_unavailable(client, "channel_layer")
    assert time.monotonic() - started < 10
    assert failed["error"] == "no round trip within 3s", failed
