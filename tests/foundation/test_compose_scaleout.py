"""docker-compose.yml for scale-out: replicas without host ports, one image built once, PostgreSQL 18,
a Redis that keeps its data, and a one-shot init step (the first tenant and operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)
DJANGO_SERVICES = {"migrate", "init", "web", "worker", "beat"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"]


def test_replicated_and_internal_services_publish_no_host_port(services: dict[str, Any]) -> None:
    """Two replicas cannot bind one host port: only the proxy publishes one."""
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}, published
    for name in ("web", "worker"):
        assert "replicas" in services[name]["deploy"], name


def test_one_image_built_once(services: dict[str, Any]) -> None:
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["migrate"], built  # the first Django service to start; every other one depends on it
    images = {services[name]["image"] for name in DJANGO_SERVICES}
    assert len(images) == 1, images
    for name in DJANGO_SERVICES - {"migrate"}:
        assert services[name]["pull_policy"] == "never", name  # never someone else's "documind" image


def test_postgresql_18_with_pgvector_keeps_its_data(services: dict[str, Any]) -> None:
    db = services["db"]
    assert db["image"] == "pgvector/pgvector:pg18"  # the embedded default's major version
    assert "pgdata:/var/lib/postgresql" in [v.split("  ")[0] for v in db["volumes"]]  # pg18's data folder


def test_redis_keeps_its_data(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert any(volume.startswith("redisdata:/data") for volume in redis["volumes"])
    assert "--appendonly" in redis["command"]


def test_init_creates_the_first_tenant_and_operator_once(services: dict[str, Any]) -> None:
    init = services["init"]
    assert init["command"] == ["python", "manage.py", "init_deployment"]
    assert init["restart"] == "no"
    assert init["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
    for name in ("TENANT", "ADMIN_EMAIL", "ADMIN_PASSWORD", "OPERATOR_EMAIL", "OPERATOR_PASSWORD"):
        assert f"DOCUMIND_INIT_{name}" in init["environment"], name
    assert "DATABASE_URL" in init["environment"]  # the shared Django environment, merged


def test_ci_installs_a_compose_when_none_is_present() -> None:
    script = (BASE_DIR / ".ci" / "run").read_text()
    assert "apt-get install" in script and "docker-compose" in script
