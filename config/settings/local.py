"""Local development (``make run``): the embedded default, console e-mail and logs, debug on unless told otherwise."""

from .base import *
from .base import LOG_LEVEL, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")

from config.logging import build_logging  # noqa: E402

LOG_FORMAT = env.str("LOG_FORMAT", default="console")
LOGGING = build_logging(LOG_FORMAT, LOG_LEVEL)
