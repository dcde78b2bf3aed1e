"""External services some tests need, one pytest marker each: ``redis``, ``chromium``, ``docker_compose``,
``tesseract``.

A test carrying a marker runs when the service is there. When it is not, the test is skipped with a
reason on a developer's machine, and FAILS when ``CI=true`` (design.md, "Contracts"): CI provides
every service (``.ci/run``), so a missing one is a broken CI, not a reason to pass. ``pytest -rs``
(on by default: ``-ra`` in pyproject.toml) prints each skip's reason.

* ``redis``: ``REDIS_URL`` answering (the suite moves it to ``DOCUMIND_TEST_REDIS_URL``), or a
  ``redis-server`` binary, from which the session starts a private server on a free port.
* ``chromium``: Debian's ``chromium`` (or ``chromium-browser``) and the ``playwright`` package.
* ``docker_compose``: ``docker compose`` (v2 plugin) or the standalone ``docker-compose``.
* ``tesseract``: the ``tesseract`` binary with the language packs the OCR tests read
  (:data:`TESSERACT_LANGUAGES`; Debian's ``tesseract-ocr-<language>``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from urllib.parse import urlparse

import pytest


def in_ci() -> bool:
    """True when running under CI (``CI=true``, as GitHub Actions, GitLab and ``.ci/run`` set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def shared_redis_url() -> str | None:
    """The Redis given in the environment when it answers, else None."""
    url = os.environ.get("DOCUMIND_TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    if not url:
        return None
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return url
    except OSError:
        return None


def redis_missing() -> str | None:
    if shared_redis_url() or shutil.which("redis-server"):
        return None
    return "Redis not available: no REDIS_URL answers and no redis-server binary (apt install redis-server)"


@functools.cache
def compose_command() -> tuple[str, ...] | None:
    """``docker compose`` (v2 plugin) or, failing that, the standalone ``docker-compose``."""
    if shutil.which("docker") is not None:
        try:
            result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            result = None
        if result is not None and result.returncode == 0:
            return ("docker", "compose")
    if shutil.which("docker-compose") is not None:
        return ("docker-compose",)
    return None


def compose_missing() -> str | None:
    if compose_command() is None:
        return "docker compose not available: neither `docker compose` nor `docker-compose` is installed"
    return None


def chromium_binary() -> str | None:
    """``CHROMIUM_PATH`` when set (it must exist), else Debian's ``chromium`` (or a similar name) on PATH."""
    if os.environ.get("CHROMIUM_PATH"):
        path = os.environ["CHROMIUM_PATH"]
        return path if os.path.exists(path) else None  # noqa: PTH110
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_missing() -> str | None:
    if chromium_binary() is None:
        return "chromium not available: install Debian's chromium package (or set CHROMIUM_PATH to a browser)"
    if importlib.util.find_spec("playwright") is None:
        return "chromium not available: the playwright package is not installed"
    return None


TESSERACT_LANGUAGES = ("eng", "deu", "fas", "ara")  # what tests/documents/test_ocr.py reads with Tesseract


def tesseract_languages() -> set[str]:
    """The language packs ``tesseract --list-langs`` names (empty without the binary)."""
    if not shutil.which("tesseract"):
        return set()
    try:
        listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line.strip() for line in listed.splitlines()[1:] if line.strip()}


def tesseract_missing() -> str | None:
    if not shutil.which("tesseract"):
        return "tesseract not available: install Debian's tesseract-ocr and its language packs"
    absent = [language for language in TESSERACT_LANGUAGES if language not in tesseract_languages()]
    if absent:
        packages = " ".join(f"tesseract-ocr-{language}" for language in absent)
        return f"tesseract is missing the language packs {', '.join(absent)} (apt install {packages})"
    return None


SERVICES: dict[str, Callable[[], str | None]] = {
    "redis": redis_missing,
    "chromium": chromium_missing,
    "docker_compose": compose_missing,
    "tesseract": tesseract_missing,
}

MARKERS = {
    "redis": "needs Redis (REDIS_URL or a redis-server binary): skipped with a reason locally, fails under CI=true",
    "chromium": "needs Debian's chromium and playwright: skipped with a reason locally, fails under CI=true",
    "docker_compose": "needs docker compose / docker-compose: skipped with a reason locally, fails under CI=true",
    "tesseract": f"needs tesseract with the {'/'.join(TESSERACT_LANGUAGES)} packs: skipped with a reason locally, "
    "fails under CI=true",
}


def require_service(name: str) -> None:
    """Skip (locally) or fail (``CI=true``) the running test when service ``name`` is missing."""
    missing(SERVICES[name]())


def require_redis_server() -> None:
    """The ``redis-server`` binary itself (tests that stop and restart a private Redis need it)."""
    missing(None if shutil.which("redis-server") else "redis-server is not installed (apt install redis-server)")


def missing(reason: str | None) -> None:
    """Nothing when ``reason`` is None; else skip with it, or fail under ``CI=true``."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true and a service this test needs is missing. {reason}", pytrace=False)
    pytest.skip(reason)


def check_markers(item: pytest.Item) -> None:
    """The ``pytest_runtest_setup`` hook's work: each service marker on ``item`` must be satisfied."""
    for name in SERVICES:
        if item.get_closest_marker(name) is not None:
            require_service(name)
