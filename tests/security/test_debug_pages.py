"""Attack: provoke Django's debug page (settings, source, SQL) or a 500 on a fresh ``make run``.

``make run`` serves with debug off unless ``DJANGO_DEBUG`` is set (and refuses that on a public
host: ``test_keys.test_make_run_exports_the_install_keys``); and even with debug on, a missing
``/static/...`` or ``/media/...`` file is the JSON 404, never the debug page or a 500.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.crosstenant import assert_envelope

pytestmark = pytest.mark.django_db

MISSING = [
    "/static/nope.js",
    "/static/drf_spectacular_sidecar/nope.css",
    "/static/../config/settings/base.py",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/media/tenants/x/documents/secret.pdf",
    "/media/../var/secret-key",
    "/media/",
]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", MISSING)
def test_missing_static_and_media_files_are_the_json_404(settings: Any, debug: bool, path: str) -> None:
    settings.DEBUG = debug
    response = Client().get(path)
    assert_envelope(response, 404, "not_found")
    assert b"Traceback" not in response.content and b"DJANGO_SETTINGS_MODULE" not in response.content


def test_existing_static_files_are_still_served() -> None:
    response = Client().get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert response.status_code == 200


def test_make_run_settings_have_debug_off_unless_asked(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    def debug_with(**extra: str) -> str:
        env = {k: v for k, v in subprocess_env.items() if k != "DJANGO_DEBUG"}
        env.update(DJANGO_SETTINGS_MODULE="config.settings.local", DOCUMIND_VAR_DIR=str(tmp_path), **extra)
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"],
            cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert debug_with() == "False"
    assert debug_with(DJANGO_DEBUG="true") == "True"
    assert "DJANGO_DEBUG" not in os.environ or os.environ["DJANGO_DEBUG"].lower() in {"0", "false", ""}
