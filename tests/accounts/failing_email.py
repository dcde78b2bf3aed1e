"""E-mail backends for the delivery tests (``EMAIL_BACKEND``): a server that is down, a slow one."""

from __future__ import annotations

import smtplib
import threading
from typing import Any

from django.core.mail.backends import locmem
from django.core.mail.backends.base import BaseEmailBackend


class FailingEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Any) -> int:
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class SlowEmailBackend(locmem.EmailBackend):
    """A mail server that answers only once ``RELEASE`` is set (or after 10 s): the locmem outbox then."""

    RELEASE = threading.Event()

    def send_messages(self, email_messages: Any) -> int:
        self.RELEASE.wait(10)
        return super().send_messages(email_messages)
