"""Local development (``make run``): the embedded default, console e-mail and logs.

Debug is off unless ``DJANGO_DEBUG`` turns it on (``scripts/run.py`` refuses it on a non-loopback
host). The signing keys come from the environment or are made once per install under ``var/``
(mode 0600, :mod:`config.keys`); none is committed.
"""

from config.keys import local_key

from .base import *
from .base import LOG_LEVEL, SIMPLE_JWT, VAR_DIR, env

SECRET_KEY = local_key("DJANGO_SECRET_KEY", VAR_DIR)
SIMPLE_JWT["SIGNING_KEY"] = local_key("JWT_SIGNING_KEY", VAR_DIR)
WEBHOOK_SECRET_KEYS = env.list("WEBHOOK_SECRET_KEYS", default=[]) or [SECRET_KEY]
DEBUG = env.bool("DJANGO_DEBUG", default=False)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

from config.logging import build_logging  # noqa: E402

LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOGGING = build_logging(LOG_FORMAT, LOG_LEVEL)
