"""Signing keys: made per install for ``make run``, checked strictly in production.

No usable key is committed anywhere. ``make run`` (and ``manage.py`` in local settings) reads
``DJANGO_SECRET_KEY`` / ``JWT_SIGNING_KEY`` from the environment, else from ``var/secret-key`` /
``var/jwt-signing-key``, made once with :mod:`secrets` and readable by the owner only (like the demo
password). Production settings refuse to start, with one line naming the variable, when a key is
missing, shorter than :data:`MIN_KEY_LENGTH`, or a known placeholder.

This module must import nothing from Django: settings modules and ``scripts/run.py`` use it before
Django is configured.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

MIN_KEY_LENGTH = 50
MIN_UNIQUE_CHARACTERS = 5

# Fragments of keys that were published (this repository's old defaults) or that people paste from
# examples: a key containing one of these is refused whatever its length.
PLACEHOLDER_FRAGMENTS = (
    "change-me",
    "changeme",
    "change_me",
    "insecure",
    "placeholder",
    "example",
    "build-only",
    "dev-key",
    "your-secret",
    "your_secret",
    "secret-key-here",
    "not-a-secret",
    "compose-local-only",
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
)

KEY_FILES = {"DJANGO_SECRET_KEY": "secret-key", "JWT_SIGNING_KEY": "jwt-signing-key"}


def new_key() -> str:
    """A fresh random key (about 67 URL-safe characters)."""
    return secrets.token_urlsafe(50)


def key_problem(value: str | None) -> str | None:
    """Why ``value`` is not acceptable as a production signing key, or None when it is."""
    if not value:
        return "is not set"
    if len(value) < MIN_KEY_LENGTH:
        return f"is shorter than {MIN_KEY_LENGTH} characters"
    if len(set(value)) < MIN_UNIQUE_CHARACTERS:
        return "has too few distinct characters"
    lowered = value.lower()
    if lowered.startswith("django-insecure") or any(fragment in lowered for fragment in PLACEHOLDER_FRAGMENTS):
        return "is a known placeholder"
    return None


def require_key(name: str, value: str | None) -> str:
    """``value`` if it is a good key; otherwise stop the process with one line naming ``name``.

    ``SystemExit`` with a message prints that line alone (no traceback) and exits with status 1.
    """
    problem = key_problem(value)
    if problem:
        raise SystemExit(
            f"{name} {problem}: set it to a random string of at least {MIN_KEY_LENGTH} characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    return value  # type: ignore[return-value]


def install_key(path: Path) -> str:
    """The key kept in ``path``; made (mode 0600) on first use. Safe when several processes race."""
    with contextlib.suppress(FileNotFoundError):
        existing = path.read_text().strip()
        if existing:
            return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(new_key() + "\n")
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs wins
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text().strip()


def local_key(name: str, var_dir: Path) -> str:
    """``name`` from the environment, else this install's key under ``var_dir`` (made once)."""
    return os.environ.get(name) or install_key(var_dir / KEY_FILES[name])
