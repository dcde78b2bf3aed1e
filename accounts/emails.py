"""E-mails sent through Django's e-mail framework (console in local settings, SMTP in production)."""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils.http import urlencode

from accounts.codes import CodePurpose
from tenants.models import Tenant

logger = logging.getLogger(__name__)

SUBJECTS = {
    CodePurpose.SIGN_IN: "Your {app} sign-in code",
    CodePurpose.PASSWORD_RESET: "Your {app} password reset code",
}
TEMPLATES = {
    CodePurpose.SIGN_IN: "accounts/email/sign_in_code.txt",
    CodePurpose.PASSWORD_RESET: "accounts/email/password_reset_code.txt",
}


def _send(subject: str, body: str, to: str) -> bool:
    """Send one e-mail; a delivery failure is logged, never shown to the requester (no enumeration)."""
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)
    except (smtplib.SMTPException, OSError):
        logger.exception("email_delivery_failed", extra={"subject": subject})
        return False
    return True


_executor: ThreadPoolExecutor | None = None
_pending: set[Future] = set()
_lock = threading.Lock()


def deliver_in_background(send: Callable[[], object]) -> None:
    """Run ``send`` on a background thread (``AUTH_EMAIL_IN_BACKGROUND``, the default) or right now.

    The public endpoints that e-mail a code answer the same whether or not the address has an
    account; waiting for the mail server only for those that do would tell them apart by the clock.
    """
    global _executor
    if not settings.AUTH_EMAIL_IN_BACKGROUND:
        send()
        return
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="email")
        future = _executor.submit(send)
        _pending.add(future)
    future.add_done_callback(_pending.discard)


def wait_for_background_mail(timeout: float = 30) -> None:
    """Wait until the e-mails handed to the background have been sent (tests, shutdown)."""
    with _lock:
        pending = set(_pending)
    wait(pending, timeout=timeout)


def console_link(*, tenant: Tenant, email: str) -> str:
    """The console's sign-in page with the workspace and the address filled in (``CONSOLE_URL``)."""
    return f"{settings.CONSOLE_URL}/console/?" + urlencode({"workspace": tenant.slug, "email": email})


def send_code_email(*, tenant: Tenant, email: str, code: str, purpose: CodePurpose, deliver: bool = True) -> bool:
    """E-mail ``code`` to ``email``; returns whether the backend accepted it.

    With ``deliver=False`` the message is made but not sent: the same work for an address that gets
    nothing, so the background thread loads the machine alike either way.
    """
    context = {
        "app_name": settings.APP_NAME,
        "tenant": tenant,
        "code": code,
        "minutes": max(1, settings.AUTH_CODE_TTL_SECONDS // 60),
        "console_link": console_link(tenant=tenant, email=email),
    }
    subject = SUBJECTS[purpose].format(app=settings.APP_NAME)
    body = render_to_string(TEMPLATES[purpose], context)
    return _send(subject, body, email) if deliver else False


def send_invitation_email(*, tenant: Tenant, email: str, role: str, invited_by: str = "") -> bool:
    """Tell an invited person how to sign in (with an e-mailed code)."""
    context = {
        "app_name": settings.APP_NAME,
        "tenant": tenant,
        "email": email,
        "role": role,
        "invited_by": invited_by,
        "console_link": console_link(tenant=tenant, email=email),
    }
    subject = f"You are invited to {tenant.name} on {settings.APP_NAME}"
    return _send(subject, render_to_string("accounts/email/invitation.txt", context), email)


def send_registration_email(*, tenant: Tenant, email: str, already_registered: bool) -> bool:
    """After a registration: a welcome, or (the address was taken) a note to the account's owner.

    ``register`` answers the same either way; the difference only reaches the mailbox's owner.
    """
    context = {"app_name": settings.APP_NAME, "tenant": tenant, "email": email}
    if already_registered:
        subject = f"Someone tried to register your address on {settings.APP_NAME}"
        body = render_to_string("accounts/email/account_exists.txt", context)
    else:
        subject = f"Welcome to {tenant.name} on {settings.APP_NAME}"
        body = render_to_string("accounts/email/welcome.txt", context)
    return _send(subject, body, email)
