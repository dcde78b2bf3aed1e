"""docker-compose.yml, the Dockerfile, and settings documented in .env.example and the README."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from tests.services import compose_command

BASE_DIR = Path(settings.BASE_DIR)
COMPOSE = BASE_DIR / "docker-compose.yml"


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(compose_command() or ()), "-f", str(COMPOSE), "config", "--quiet"],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.docker_compose
def test_docker_compose_config_passes() -> None:
    """``docker compose config`` accepts the file (.ci/run installs Debian's docker-compose for this)."""
    base = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SECRET_KEY", "POSTGRES_PASSWORD"}}
    result = compose_config({**base, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": "pw"})
    assert result.returncode == 0, result.stderr
    # The secrets have no default: without them compose refuses, naming the variable.
    missing_key = compose_config({**base, "POSTGRES_PASSWORD": "pw"})
    assert missing_key.returncode != 0 and "DJANGO_SECRET_KEY" in missing_key.stderr
    missing_password = compose_config({**base, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)})
    assert missing_password.returncode != 0 and "POSTGRES_PASSWORD" in missing_password.stderr


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"db", "redis", "migrate", "web", "worker", "proxy"} <= set(services)
    assert services["db"]["image"] == "pgvector/pgvector:pg18"  # the embedded default's major
    assert services["redis"]["image"].startswith("redis:")
    assert services["web"]["command"][:3] == ["python", "-m", "config.serve"]  # daphne with body limits
    assert "config.asgi:application" in services["web"]["command"]
    assert "ports" not in services["web"]  # only the proxy is published
    assert services["proxy"]["image"].startswith("nginx:")
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"


def test_compose_defines_the_django_service_once(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    assert "x-django: &django" in text
    django_services = {"migrate", "init", "web", "worker", "beat"}
    assert len(re.findall(r"<<: \*django$", text, re.MULTILINE)) == len(django_services)
    for name in django_services:
        service = compose["services"][name]
        assert service["image"] == "documind:latest", name
        env = service["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production", name
        assert env["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in env["DATABASE_URL"], name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert "media:/app/var/media" in service["volumes"], name


def test_compose_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("db", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert any("/api/v1/health/ready" in part for part in services["web"]["healthcheck"]["test"])
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["db"]["condition"] == depends["redis"]["condition"] == "service_healthy", name


def test_dockerfile_is_slim_non_root_and_production() -> None:
    text = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert "requirements/production.txt" in text
    assert "DJANGO_SETTINGS_MODULE=config.settings.production" in text
    assert "collectstatic" in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert "config.asgi:application" in text
    ignored = (BASE_DIR / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git"} <= set(ignored)


def settings_read_from_the_environment() -> set[str]:
    names: set[str] = set()
    for path in (BASE_DIR / "config" / "settings").glob("*.py"):
        names |= set(re.findall(r"""\benv(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", path.read_text()))
    return names


def test_every_setting_is_in_env_example_and_the_readme() -> None:
    names = settings_read_from_the_environment()
    assert {"DATABASE_URL", "REDIS_URL", "LOG_FORMAT", "RATELIMIT_PER_MINUTE"} <= names
    env_example = (BASE_DIR / ".env.example").read_text()
    readme = (BASE_DIR / "README.md").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", env_example, re.M))
    missing_example = sorted(names - documented)
    assert not missing_example, f"add these to .env.example: {missing_example}"
    missing_readme = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing_readme, f"add these to the README's settings section: {missing_readme}"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (BASE_DIR / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make run" in first_screen and "make test" in first_screen
    for heading in ("## Settings", "## Distributed mode", "## Architecture", "## Signing in"):
        assert heading in readme, heading
