"""Production: secrets and the database have no default (a missing one fails at start-up), HTTPS everywhere.

``DJANGO_SECRET_KEY`` (and ``JWT_SIGNING_KEY`` and each of ``WEBHOOK_SECRET_KEYS`` when set; they
default to the secret key) must be at least 50 random characters and no known placeholder:
otherwise the process stops with one line naming the variable (:mod:`config.keys`).

``DJANGO_BUILD_STEP=collectstatic`` is the image build's explicit switch: ``collectstatic`` only
reads settings, so that step gets a throw-away random key (never written anywhere) and no database.
The server entry point refuses to serve with it set (``config.serve``).
"""

import os

import environ

from config.keys import new_key, require_key

BUILD_STEP = environ.Env().str("DJANGO_BUILD_STEP", default="")
if BUILD_STEP and BUILD_STEP != "collectstatic":
    raise SystemExit(f"DJANGO_BUILD_STEP={BUILD_STEP!r} is not a build step: only 'collectstatic' is.")
if BUILD_STEP:
    os.environ["DJANGO_SECRET_KEY"] = os.environ["JWT_SIGNING_KEY"] = new_key()
    os.environ.setdefault("DATABASE_URL", "postgresql://build@localhost/build")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "localhost")

# Checked before base is imported: without DATABASE_URL, base would start the embedded server.
if not environ.Env().str("DATABASE_URL", default=""):
    raise SystemExit(
        "DATABASE_URL is not set: production needs PostgreSQL with pgvector, e.g. postgresql://u:p@host/db"
    )

from .base import *  # noqa: E402
from .base import env  # noqa: E402

DEBUG = False
SECRET_KEY = require_key("DJANGO_SECRET_KEY", env.str("DJANGO_SECRET_KEY", default=""))
SIMPLE_JWT["SIGNING_KEY"] = require_key("JWT_SIGNING_KEY", env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY)
WEBHOOK_SECRET_KEYS = [
    require_key("WEBHOOK_SECRET_KEYS", key) for key in env.list("WEBHOOK_SECRET_KEYS", default=[]) or [SECRET_KEY]
]
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^api/v1/health"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)

# Static files come from STATIC_ROOT, filled by `manage.py collectstatic` (the Dockerfile runs it).
SERVESTATIC_USE_FINDERS = env.bool("SERVESTATIC_USE_FINDERS", default=False)

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
if "pool" not in DATABASES["default"].get("OPTIONS", {}):  # a pool refuses persistent connections
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
CONSOLE_COOKIE_SECURE = env.bool("CONSOLE_COOKIE_SECURE", default=True)
