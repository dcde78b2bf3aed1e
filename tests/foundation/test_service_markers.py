"""The service markers (``redis``, ``chromium``, ``docker_compose``, ``tesseract``): skip with a reason,
FAIL under CI=true.

Run through a real pytest in a child process, with a PATH on which no service can be found, on a
throwaway test file that uses the suite's own hook (``tests.services.check_markers``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.services import MARKERS

TEST_FILE = """
import pytest

@pytest.mark.redis
def test_needs_redis():
    pass

@pytest.mark.chromium
def test_needs_chromium():
    pass

@pytest.mark.docker_compose
def test_needs_compose():
    pass

@pytest.mark.tesseract
def test_needs_tesseract():
    pass

def test_needs_nothing():
    pass
"""

CONFTEST = """
from tests.services import MARKERS, check_markers

def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")

def pytest_runtest_setup(item):
    check_markers(item)
"""


def run_pytest(tmp_path: Path, *, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_services.py").write_text(TEST_FILE)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -rs --strict-markers -p no:cacheprovider -p no:django\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "REDIS_URL", "DOCUMIND_TEST_REDIS_URL"}}
    env.update(PATH=str(empty_bin), PYTHONPATH=str(settings.BASE_DIR))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_missing_service_is_a_skip_with_its_reason_on_a_developer_machine(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 4 skipped" in result.stdout, result.stdout
    # -rs prints each reason
    assert "Redis not available" in result.stdout
    assert "chromium not available" in result.stdout
    assert "docker compose not available" in result.stdout
    assert "tesseract not available" in result.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_service_fails_the_run_under_ci(tmp_path: Path, ci: str) -> None:
    result = run_pytest(tmp_path, ci=ci)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 4 errors" in result.stdout, result.stdout  # fails at set-up, before the test body
    assert result.stdout.count("CI=true and a service this test needs is missing") >= 4, result.stdout


def test_ci_false_is_not_ci(tmp_path: Path) -> None:
    assert "1 passed, 4 skipped" in run_pytest(tmp_path, ci="false").stdout


def test_every_service_has_a_registered_marker() -> None:
    from tests.services import SERVICES

    assert set(MARKERS) == set(SERVICES) == {"redis", "chromium", "docker_compose", "tesseract"}
    registered = {line.split(":")[0] for line in settings_markers()}
    assert set(SERVICES) <= registered


def settings_markers() -> list[str]:
    import tomllib

    config = tomllib.loads((Path(settings.BASE_DIR) / "pyproject.toml").read_text())
    return config["tool"]["pytest"]["ini_options"]["markers"]
