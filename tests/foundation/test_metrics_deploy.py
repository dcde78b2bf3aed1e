"""Prometheus in docker-compose.yml: the shared multiprocess folder, the scrape config, the proxy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def test_web_and_workers_share_a_fresh_multiprocess_folder(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("web", "worker"):
        env = services[name]["environment"]
        folder = env["PROMETHEUS_MULTIPROC_DIR"]
        assert any(volume == f"metrics:{folder}" for volume in services[name]["volumes"]), name
        assert "METRICS_TOKEN" in env, name
    # tmpfs: emptied whenever the stack starts (stale files of dead processes would be added up).
    assert compose["volumes"]["metrics"]["driver_opts"]["type"] == "tmpfs"


def test_prometheus_scrapes_web_with_the_token(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert prometheus["profiles"] == ["monitoring"]
    assert "ports" not in prometheus
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    script = prometheus["command"][0]
    assert 'test -n "$$METRICS_TOKEN"' in script and "/prometheus/metrics-token" in script
    config = yaml.safe_load((BASE_DIR / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/prometheus/metrics-token"}
    assert job["static_configs"] == [{"targets": ["web:8000"]}]


def test_the_proxy_never_serves_the_metrics() -> None:
    text = (BASE_DIR / "deploy" / "nginx.conf.template").read_text()
    start = text.index("location = /metrics {")
    block = text[start : text.index("\n    }", start)]
    assert "return 404" in block and '"type": "not_found"' in block and "proxy_pass" not in block
