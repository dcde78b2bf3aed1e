"""Security headers everywhere, HSTS and `check --deploy` with the production settings, CORS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)

EXPECTED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "geolocation=(), microphone=(), camera=()",
}


@pytest.mark.parametrize(
    ("url", "status"),
    [("/", 200), ("/api/v1/health/live", 200), ("/nope", 404), ("/api/v1/tasks/", 400), ("/docs", 200)],
)
def test_security_headers_on_every_kind_of_response(client: Client, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status
    for header, value in EXPECTED_HEADERS.items():
        # /docs included: the split Swagger view (CSP) keeps COOP same-origin (we use no OAuth2 pop-up).
        assert response[header] == value, header
    assert "Strict-Transport-Security" not in response  # only in production, over HTTPS


def production_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    env = dict(subprocess_env)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="api.example.com",
    )
    return env


def test_production_settings_pass_check_deploy(subprocess_env: dict[str, str]) -> None:
    """Every deployment check passes; the security ones even at warning level.

    (drf-spectacular's own deploy check, which regenerates the schema, is covered without the
    security noise by ``test_openapi.test_schema_generates_without_warnings``.)
    """
    env = production_env(subprocess_env)
    security = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--tag", "security", "--fail-level", "WARNING"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout + security.stderr
    assert "no issues" in security.stdout
    everything = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert everything.returncode == 0, everything.stdout + everything.stderr


def test_production_sends_hsts_and_redirects_plain_http(subprocess_env: dict[str, str]) -> None:
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "c = Client(HTTP_HOST='api.example.com')\n"
        "r = c.get('/', secure=True)\n"
        "print(r.status_code, r['Strict-Transport-Security'])\n"
        "r = c.get('/')\n"
        "print(r.status_code, r['Location'])\n"
        "r = c.get('/api/v1/health/live')\n"
        "print(r.status_code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, env=production_env(subprocess_env),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    secure, plain, health = result.stdout.strip().splitlines()[-3:]
    assert secure == "200 max-age=31536000; includeSubDomains; preload"
    assert plain == "301 https://api.example.com/"
    assert health == "200"  # load balancers probe over plain HTTP


def test_production_settings_refuse_to_start_without_their_secrets(subprocess_env: dict[str, str]) -> None:
    env = production_env(subprocess_env)
    for missing in ("DJANGO_SECRET_KEY", "DATABASE_URL", "DJANGO_ALLOWED_HOSTS"):
        broken = {k: v for k, v in env.items() if k != missing}
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=BASE_DIR,
            env=broken,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and missing in result.stderr, (missing, result.stderr[-500:])


PREFLIGHT = {
    "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
    "HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "authorization,x-tenant-id",
}


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_cors_preflight_from_an_allowed_origin(client: Client) -> None:
    response = client.options("/api/v1/tasks/", HTTP_ORIGIN="https://app.example.com", **PREFLIGHT)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    allowed = response["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "x-tenant-id" in allowed and "x-request-id" in allowed
    assert "POST" in response["Access-Control-Allow-Methods"]

    actual = client.get("/api/v1/health/live", HTTP_ORIGIN="https://app.example.com")
    assert actual["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "x-request-id" in actual["Access-Control-Expose-Headers"].lower()


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_cors_preflight_from_another_origin_gets_no_cors_headers(client: Client) -> None:
    for origin in ("https://evil.example.com", "http://app.example.com", "https://app.example.com.evil.io"):
        response = client.options("/api/v1/tasks/", HTTP_ORIGIN=origin, **PREFLIGHT)
        assert "Access-Control-Allow-Origin" not in response, origin
        actual = client.get("/api/v1/health/live", HTTP_ORIGIN=origin)
        assert "Access-Control-Allow-Origin" not in actual, origin


def test_cors_is_closed_by_default(client: Client) -> None:
    assert settings.CORS_ALLOWED_ORIGINS == [] or os.environ.get("CORS_ALLOWED_ORIGINS")
    response = client.options("/api/v1/tasks/", HTTP_ORIGIN="https://app.example.com", **PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in response
