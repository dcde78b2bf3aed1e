"""Webhook endpoint secrets, encrypted at rest with keys from ``settings.WEBHOOK_SECRET_KEYS``.

Standard Webhooks signs with the raw secret, so it cannot be stored as a hash like an API key's.
The ``secret`` column holds a Fernet token instead (AES-128-CBC with HMAC-SHA256, from
``cryptography``); :class:`EncryptedSecretField` encrypts on the way in and decrypts on the way out,
so ``endpoint.secret`` is the plain ``whsec_...`` value in Python and nowhere else.

Keys: each entry of ``WEBHOOK_SECRET_KEYS`` (a random string of 50+ characters; by default the
Django secret key alone) becomes a Fernet key through HKDF-SHA256. The first encrypts, every one
decrypts (``MultiFernet``), which is how a key is rotated: put the new key first, restart, run
``manage.py reencrypt_webhook_secrets`` (every row re-encrypted under the first key), then drop
the old key. A row no key can decrypt raises :class:`SecretUnreadable`, naming the setting.

The field cannot be filtered on (each encryption differs); nothing looks endpoints up by secret.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

HKDF_INFO = b"documind webhook endpoint secrets v1"


class SecretUnreadable(ImproperlyConfigured):
    """A stored secret that none of ``WEBHOOK_SECRET_KEYS`` decrypts (a key was dropped too early)."""


def fernet_key(key: str) -> bytes:
    """The Fernet key derived from one entry of ``WEBHOOK_SECRET_KEYS``."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(key.encode())
    return base64.urlsafe_b64encode(derived)


@functools.cache
def _box(keys: tuple[str, ...]) -> MultiFernet:
    if not keys or not all(keys):
        raise ImproperlyConfigured("WEBHOOK_SECRET_KEYS is empty: webhook secrets cannot be encrypted.")
    return MultiFernet([Fernet(fernet_key(key)) for key in keys])


def box() -> MultiFernet:
    """The keys of the settings now (cached per distinct list)."""
    return _box(tuple(settings.WEBHOOK_SECRET_KEYS))


def encrypt(plain: str) -> str:
    return box().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return box().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A webhook endpoint secret cannot be decrypted with any of WEBHOOK_SECRET_KEYS"
            " (was the key that encrypted it removed, or DJANGO_SECRET_KEY changed while it was the key?)."
        ) from exc


class EncryptedSecretField(models.TextField):
    """A text column that stores a Fernet token of its value (see the module docstring)."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        return None if value is None else decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else encrypt(value)
