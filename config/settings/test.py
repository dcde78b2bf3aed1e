"""Tests: an embedded PostgreSQL of their own in a temporary folder, deleted at the end.

A session (or a helper process it starts) that already has ``DATABASE_URL`` or ``EMBEDDED_PGDATA``
set uses that instead, so subprocesses started by the tests share the test server.
"""

import os
import secrets
import tempfile
import uuid
from pathlib import Path

# The suite itself always runs on the embedded stand-ins (database cache, PostgreSQL channel layer,
# filesystem broker), so that it is the same with or without Redis. Tests of the distributed mode ask
# for Redis explicitly (the ``require_redis`` fixture reads DOCUMIND_TEST_REDIS_URL) and hand
# REDIS_URL to the subprocesses they start.
if not os.environ.get("DOCUMIND_TEST_SUBPROCESS"):
    if os.environ.get("REDIS_URL"):
        os.environ["DOCUMIND_TEST_REDIS_URL"] = os.environ.pop("REDIS_URL")
    # A queue of this session's own: sessions sharing one Redis never take each other's tasks.
    os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", f"documind-test-{uuid.uuid4().hex[:8]}")

# Signing keys of this session, made here (nothing committed is a key) and inherited by the processes
# the tests start, so tokens made in the test process work in them.
if not os.environ.get("DJANGO_SECRET_KEY"):
    os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
if not os.environ.get("JWT_SIGNING_KEY"):
    os.environ["JWT_SIGNING_KEY"] = secrets.token_urlsafe(50)

if not os.environ.get("DATABASE_URL") and not os.environ.get("EMBEDDED_PGDATA"):
    _root = Path(tempfile.mkdtemp(prefix="documind-test-"))
    os.environ["DOCUMIND_TEST_ROOT"] = str(_root)
    os.environ["EMBEDDED_PGDATA"] = str(_root / "pgdata")
    os.environ["EMBEDDED_PG_CLEANUP"] = "delete"
    os.environ.setdefault("CELERY_BROKER_DIR", str(_root / "broker"))
    os.environ.setdefault("MEDIA_ROOT", str(_root / "media"))

from .base import *
from .base import CHANNEL_LAYERS, DATABASES, env

DEBUG = False
# The production backend, except that its flush between transactional tests may empty the audit log,
# whose TRUNCATE PostgreSQL otherwise refuses (tests/db_backend/base.py).
DATABASES["default"]["ENGINE"] = "tests.db_backend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Servers started by the tests (daphne for the browser tests) write their e-mails to files instead.
# (test-only knobs, read from os.environ like the DOCUMIND_TEST_* ones, not user settings)
EMAIL_BACKEND = os.environ.get("DOCUMIND_TEST_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
EMAIL_FILE_PATH = os.environ.get("DOCUMIND_TEST_EMAIL_DIR", "")
if os.environ.get("DOCUMIND_TEST_SUBPROCESS") and os.environ.get("EMAIL_FILE_PATH"):
    # Servers started by the end-to-end tests (tests/stack.py) write e-mails (sign-in codes) there.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["EMAIL_FILE_PATH"]
AUTH_EMAIL_IN_BACKGROUND = False  # tests read the outbox right after the request (one test turns it on)
LOG_LEVEL = env.str("LOG_LEVEL", default="WARNING")
RATELIMIT_ENABLED = env.bool("RATELIMIT_ENABLED", default=True)
# Tests embed with the fast lexical provider; those about the local model ask for it by name.
EMBEDDING_PROVIDER = env.str("EMBEDDING_PROVIDER", default="hashing")
CHAT_SOCKET_AUTH_SECONDS = 2.0  # a bare socket that never sends its auth frame is closed sooner

# pytest-django runs against "test_<name>"; the PostgreSQL channel layer must use that database too.
if CHANNEL_LAYERS["default"]["BACKEND"].endswith("PostgresChannelLayer") and not os.environ.get(
    "DOCUMIND_TEST_SUBPROCESS"
):
    CHANNEL_LAYERS["default"]["CONFIG"]["NAME"] = "test_" + DATABASES["default"]["NAME"]

# The test process itself runs without the pool, as it did before there was one: some tests fire 20
# threads at once and count on each opening its connection then (a pool hands them out at another
# pace). Every server and worker the tests start (subprocesses) runs with the pool, and
# tests/foundation/test_db_pool.py checks it in the local and production settings.
if not os.environ.get("DOCUMIND_TEST_SUBPROCESS"):
    DATABASES["default"].get("OPTIONS", {}).pop("pool", None)

from config.logging import build_logging  # noqa: E402

LOGGING = build_logging(env.str("LOG_FORMAT", default="console"), LOG_LEVEL)
