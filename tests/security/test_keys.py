"""Attack: sign your own admin token with a key anyone can read (the committed default).

Fixed: no key is committed anywhere; ``make run`` (local settings) makes random keys once per
install under ``var/`` (mode 0600); production refuses a missing, short or placeholder key with one
line naming the variable; compose requires it; the image's ``collectstatic`` uses an explicit switch.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from django.conf import settings
from django.utils import timezone

from config.keys import MIN_KEY_LENGTH, install_key, key_problem
from tests.conftest import make_client

BASE_DIR = Path(settings.BASE_DIR)
KEY_VARIABLES = ("DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "WEBHOOK_SECRET_KEYS")
# The keys this repository used to publish (config/settings/base.py, docker-compose.yml): anyone
# could sign tokens with them. Spelled in pieces so this file holds no usable key itself.
PUBLISHED_KEYS = (
    "insecure-dev-key-change-me-" + "0123456789-abcdefghijklmnopqrstuvwxyz",
    "compose-local-only-change-me-" + "3f9a1c7e5b2d8a4f6e0c9b1d7a3e5f2c",
)


def tracked_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=BASE_DIR, capture_output=True, text=True, check=True).stdout
    return [BASE_DIR / name for name in names.splitlines() if (BASE_DIR / name).is_file()]


def env_without_keys(subprocess_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env.items() if k not in KEY_VARIABLES}
    env.update(extra)
    return env


@pytest.mark.django_db
def test_a_token_signed_with_a_published_key_is_refused(user: Any) -> None:
    now = int(timezone.now().timestamp())
    claims = {
        "token_type": "access",
        "exp": now + 600,
        "iat": now,
        "jti": "forged",
        "user_id": str(user.pk),
        "tenant": str(user.tenant_id),
        "role": "admin",
    }
    client = make_client(None, user.tenant)
    for key in PUBLISHED_KEYS:
        forged = jwt.encode(claims, key, algorithm="HS256")
        response = client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {forged}")
        assert response.status_code == 401, key
    assert settings.SECRET_KEY not in PUBLISHED_KEYS
    assert settings.SIMPLE_JWT["SIGNING_KEY"] not in PUBLISHED_KEYS


def test_no_key_literal_is_committed() -> None:
    # NAME=value, NAME: value, "NAME", default="value": any literal of 16+ characters given to a key variable.
    assignment = re.compile(
        r"""(?:SECRET_KEYS?|SIGNING_KEY)["']?[ \t]*[:=,][ \t]*(?:default[ \t]*=[ \t]*)?["']?([A-Za-z0-9_\-+/=.]{16,})(?![\w(.\-])"""
    )
    offenders = []
    for path in tracked_files():
        text = path.read_text(errors="ignore")
        if path.relative_to(BASE_DIR).parts[0] != "tests":  # the tests hold weak keys to see them refused
            offenders += [f"{path.relative_to(BASE_DIR)}: {value}" for value in assignment.findall(text)]
        offenders += [f"{path.relative_to(BASE_DIR)}: published key" for key in PUBLISHED_KEYS if key in text]
    assert not offenders, offenders
    for key in (settings.SECRET_KEY, settings.SIMPLE_JWT["SIGNING_KEY"], *settings.WEBHOOK_SECRET_KEYS):
        assert len(key) >= MIN_KEY_LENGTH
        assert not any(key in path.read_text(errors="ignore") for path in tracked_files())


def local_keys(env: dict[str, str], var_dir: Path) -> tuple[str, str]:
    """The keys the local settings (``make run``, ``manage.py``) use with ``var_dir``."""
    code = "from django.conf import settings; print(settings.SECRET_KEY); print(settings.SIMPLE_JWT['SIGNING_KEY'])"
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DOCUMIND_VAR_DIR": str(var_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    secret, signing = result.stdout.split()
    return secret, signing


def test_local_settings_make_keys_once_per_install(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    env = env_without_keys(subprocess_env)
    first = local_keys(env, tmp_path / "one")
    for name in ("secret-key", "jwt-signing-key"):
        path = tmp_path / "one" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert first[0] != first[1] and all(len(key) >= MIN_KEY_LENGTH and not key_problem(key) for key in first)
    assert local_keys(env, tmp_path / "one") == first  # kept across runs
    assert set(local_keys(env, tmp_path / "two")).isdisjoint(first)  # another install, other keys
    given = "k" + os.urandom(40).hex()
    assert local_keys({**env, "DJANGO_SECRET_KEY": given, "JWT_SIGNING_KEY": given + "j"}, tmp_path / "one") == (
        given,
        given + "j",
    )


def test_make_run_exports_the_install_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("documind_run", BASE_DIR / "scripts" / "run.py")
    run = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(run)  # type: ignore[union-attr]
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    run.prepare_keys(tmp_path)
    assert os.environ["DJANGO_SECRET_KEY"] == (tmp_path / "secret-key").read_text().strip()
    assert os.environ["JWT_SIGNING_KEY"] == (tmp_path / "jwt-signing-key").read_text().strip()
    assert run.debug_refused("127.0.0.1") is None
    monkeypatch.setenv("DJANGO_DEBUG", "true")
    assert run.debug_refused("127.0.0.1") is None
    assert "DJANGO_DEBUG" in (run.debug_refused("0.0.0.0") or "")


def test_install_key_survives_a_race(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: install_key(tmp_path / "k"), range(32)))
    assert len(keys) == 1 and not list(tmp_path.glob(".k.*"))


def production(env: dict[str, str], code: str = "import django; django.setup()") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.production", "DJANGO_ALLOWED_HOSTS": "api.example.com"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short-but-random-Xq9"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": PUBLISHED_KEYS[0]}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": PUBLISHED_KEYS[1]}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "django-insecure-" + "a1b2c3d4e5" * 6}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "x" * 80}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "R" + os.urandom(40).hex(), "JWT_SIGNING_KEY": "too-short"}, "JWT_SIGNING_KEY"),
        (
            {
                "DJANGO_SECRET_KEY": "R" + os.urandom(40).hex(),
                "WEBHOOK_SECRET_KEYS": "W" + os.urandom(40).hex() + ",short",
            },
            "WEBHOOK_SECRET_KEYS",
        ),
    ],
)
def test_production_refuses_weak_keys_in_one_line(
    subprocess_env: dict[str, str], keys: dict[str, str], named: str
) -> None:
    result = production(env_without_keys(subprocess_env, **keys))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(named), result.stderr


def test_production_starts_with_a_strong_key(subprocess_env: dict[str, str]) -> None:
    result = production(env_without_keys(subprocess_env, DJANGO_SECRET_KEY="R" + os.urandom(40).hex()))
    assert result.returncode == 0, result.stderr


def test_image_build_switch_runs_collectstatic_but_never_serves(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    env = env_without_keys(subprocess_env, DJANGO_BUILD_STEP="collectstatic", STATIC_ROOT=str(tmp_path / "static"))
    env.pop("DATABASE_URL")
    collect = production(
        env, "import django; django.setup(); from django.core.management import call_command; "
        "call_command('collectstatic', interactive=False, verbosity=0)",
    )  # fmt: skip
    assert collect.returncode == 0, collect.stderr
    assert (tmp_path / "static" / "drf_spectacular_sidecar").is_dir()
    serve = subprocess.run(
        [sys.executable, "-m", "config.serve", "-p", "0", "config.asgi:application"],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.production", "DJANGO_ALLOWED_HOSTS": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode != 0 and "DJANGO_BUILD_STEP" in serve.stderr, serve.stderr

    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    collect_step = next(block for block in dockerfile.split("\nRUN ") if "manage.py collectstatic" in block)
    assert "DJANGO_BUILD_STEP=collectstatic" in collect_step and "SECRET_KEY" not in collect_step
    assert '"config.serve"' in dockerfile.splitlines()[-1]


def test_compose_requires_the_secrets() -> None:
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    env = compose["x-django"]["environment"]
    assert env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert compose["services"]["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert env["JWT_SIGNING_KEY"] == "${JWT_SIGNING_KEY:-}"  # empty: the secret key signs
    assert env["WEBHOOK_SECRET_KEYS"] == "${WEBHOOK_SECRET_KEYS:-}"  # empty: the secret key encrypts
