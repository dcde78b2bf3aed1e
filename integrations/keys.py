"""API key secrets: how they look, how they are hashed, how a presented key is checked.

A key is ``dmk_<prefix>_<secret>``: ``prefix`` (12 hex characters, unique, stored in clear) finds
the row with one indexed lookup, ``secret`` (32 random bytes, URL-safe base64) makes it unguessable.
Only the SHA-256 of the whole key is stored: a slow password hash buys nothing for 256 random bits,
and every API request checks a key. Comparison is constant-time. Keys travel in
``Authorization: Api-Key <key>`` (HTTP) or in the socket's first frame or ``Sec-WebSocket-Protocol``,
never in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed

from integrations.models import APIKey

KEY_PREFIX = "dmk_"
HEADER_PREFIX = "Api-Key "
_KEY_RE = re.compile(r"^dmk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key: ``(raw, prefix, sha256)``. The raw key is shown once and never stored."""
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return raw, prefix, hash_key(raw)


def key_from_authorization(header: str | None) -> str | None:
    """The raw key of an ``Authorization: Api-Key <key>`` header, or None for other schemes."""
    if not header or not header.startswith(HEADER_PREFIX):
        return None
    return header[len(HEADER_PREFIX) :].strip()


def api_key_verify(raw: str | None) -> APIKey:
    """The usable key ``raw`` names, with its user and tenant; else ``AuthenticationFailed`` (401).

    Malformed, unknown, wrong secret, revoked, expired, inactive tenant: all 401 at once (no cache).
    """
    match = _KEY_RE.match(raw or "")
    if match is None:
        raise AuthenticationFailed("The API key is malformed.", code="api_key_invalid")
    key = APIKey.objects.select_related("user", "tenant").filter(prefix=match.group(1)).first()
    if key is None or not hmac.compare_digest(key.secret_hash, hash_key(raw)):
        raise AuthenticationFailed("The API key is not valid.", code="api_key_invalid")
    return _usable(key)


def api_key_recheck(*, key_id: object) -> APIKey:
    """Reload a key that authenticated earlier (a long-lived socket); ``AuthenticationFailed`` if unusable now."""
    key = APIKey.objects.select_related("user", "tenant").filter(pk=key_id).first()
    if key is None:
        raise AuthenticationFailed("The API key is not valid.", code="api_key_invalid")
    return _usable(key)


def _usable(key: APIKey) -> APIKey:
    if key.is_revoked:
        raise AuthenticationFailed("The API key has been revoked.", code="api_key_revoked")
    if key.is_expired:
        raise AuthenticationFailed("The API key has expired.", code="api_key_expired")
    if not key.tenant.is_active:
        raise AuthenticationFailed("The tenant is inactive.", code="tenant_inactive")
    if not key.user.is_active:
        raise AuthenticationFailed("The API key's account is inactive.", code="api_key_revoked")
    return key


def api_key_touch(key: APIKey, *, every_seconds: int = 60) -> None:
    """Record ``last_used_at``, at most once a minute per key (one UPDATE, no read)."""
    now = timezone.now()
    if key.last_used_at is not None and (now - key.last_used_at).total_seconds() < every_seconds:
        return
    APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now
