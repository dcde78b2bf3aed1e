"""The psycopg connection pool per process (``DB_POOL_MAX_SIZE``) in the base and production settings."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = Path(settings.BASE_DIR)

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
    one = cursor.fetchone()[0]
db = settings.DATABASES["default"]
print(json.dumps({"max_age": db["CONN_MAX_AGE"], "pool": db.get("OPTIONS", {}).get("pool"),
                  "has_pool": connection.pool is not None, "one": one}))
"""


def run_probe(env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("settings_module", ["config.settings.local", "config.settings.production"])
def test_pool_is_on_by_default_and_queries_run_through_it(subprocess_env: dict[str, str], settings_module: str) -> None:
    env = dict(subprocess_env, DJANGO_SETTINGS_MODULE=settings_module, DB_POOL_MAX_SIZE="7", DB_POOL_TIMEOUT="3")
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    if settings_module.endswith("production"):
        env.update(DJANGO_SECRET_KEY=secrets.token_urlsafe(50), DJANGO_ALLOWED_HOSTS="api.example.com")
    probe = run_probe(env)
    # A pool refuses persistent connections: production's DB_CONN_MAX_AGE default must not apply.
    assert probe == {"max_age": 0, "pool": {"min_size": 1, "max_size": 7, "timeout": 3.0}, "has_pool": True, "one": 1}


def test_pool_off_restores_persistent_connections_in_production(subprocess_env: dict[str, str]) -> None:
    env = dict(
        subprocess_env,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="api.example.com",
        DB_POOL_MAX_SIZE="0",
    )
    probe = run_probe(env)
    assert probe == {"max_age": 60, "pool": None, "has_pool": False, "one": 1}
