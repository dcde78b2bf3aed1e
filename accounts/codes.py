"""One-time e-mail codes, for sign-in and password reset alike.

A code is 6 digits from :mod:`secrets`. Only its HMAC (keyed with ``SECRET_KEY`` and bound to the
purpose, tenant and e-mail) is kept, in the shared cache, for ``AUTH_CODE_TTL_SECONDS``. Each code
allows ``AUTH_CODE_MAX_ATTEMPTS`` guesses and is single use; issuing a new code replaces the old one
and its attempt count. A code issued in one tenant (or for one purpose) never verifies in another.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from enum import StrEnum

from django.conf import settings
from django.core.cache import cache

from tenants.models import Tenant

CODE_DIGITS = 6


class CodePurpose(StrEnum):
    SIGN_IN = "sign_in"
    PASSWORD_RESET = "password_reset"


def _subject(tenant: Tenant, email: str, purpose: CodePurpose) -> str:
    return f"{purpose}|{tenant.pk}|{email.strip().lower()}"


def _digest(subject: str, code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"{subject}|{code}".encode(), hashlib.sha256).hexdigest()


def _cache_key(subject: str) -> str:
    # Hashed so the cache (and its keys in Redis or the database) never holds an e-mail address.
    return "authcode:" + hashlib.sha256(subject.encode()).hexdigest()


def code_issue(*, tenant: Tenant, email: str, purpose: CodePurpose) -> str:
    """A fresh code for ``email`` in ``tenant``; it replaces any earlier code for the same purpose."""
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    subject = _subject(tenant, email, purpose)
    ttl = settings.AUTH_CODE_TTL_SECONDS
    entry = {"digest": _digest(subject, code), "nonce": secrets.token_hex(8), "expires_at": time.time() + ttl}
    cache.set(_cache_key(subject), entry, ttl)
    return code


def code_consume(*, tenant: Tenant, email: str, purpose: CodePurpose, code: str) -> bool:
    """Whether ``code`` is the live code for ``email``; a right code is used up, a wrong one costs an attempt.

    After ``AUTH_CODE_MAX_ATTEMPTS`` wrong guesses the code is discarded, so even the right code
    fails from then on.
    """
    subject = _subject(tenant, email, purpose)
    key = _cache_key(subject)
    entry = cache.get(key)
    if not isinstance(entry, dict):
        return False
    remaining = entry["expires_at"] - time.time()
    if remaining <= 0:
        cache.delete(key)
        return False
    # The counter belongs to this code (its nonce): a new code starts from zero. incr is atomic in Redis.
    attempts_key = f"{key}:attempts:{entry['nonce']}"
    cache.add(attempts_key, 0, max(1, int(remaining) + 1))
    try:
        attempts = cache.incr(attempts_key)
    except ValueError:  # expired between add and incr
        return False
    if attempts > settings.AUTH_CODE_MAX_ATTEMPTS:
        cache.delete(key)
        return False
    if not hmac.compare_digest(entry["digest"], _digest(subject, str(code))):
        return False
    # Single use: of two requests racing with the right code only the one that deletes the entry wins.
    return bool(cache.delete(key))
