"""Active tenants by slug or id, remembered for a few seconds in this process (``TENANT_CACHE_SECONDS``).

The tenant middleware names a tenant on every tenant-scoped request; looking it up cost a query and
about 0.7 ms of the ORM's CPU each time. Here an *active* tenant found once is remembered for
``TENANT_CACHE_SECONDS`` (5 by default; 0 turns the memory off). Unknown and inactive tenants are
never remembered: they are looked up (and refused, and counted against the client IP) every time.

Freshness: saving or deleting a tenant (``post_save``/``post_delete``, and :func:`forget_tenants`,
which ``tenants.services.tenant_set_active`` calls as it updates in SQL) empties this process's
memory at once and again when the transaction commits; other processes see the change within
``TENANT_CACHE_SECONDS``. Signed-in requests do not wait even that long for a deactivation: the
access token's user is loaded with their tenant fresh on every request (``accounts.tokens``), and a
deactivated tenant's tokens are refused at once; API keys likewise (``integrations.authentication``).

Each request gets a tenant instance of its own (built from the remembered column values, ``settings``
copied), so nothing a request does to ``request.tenant`` reaches another.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

from tenants.models import Tenant

_lock = threading.Lock()
_remembered: dict[tuple[str, str], tuple[float, tuple[Any, ...]]] = {}  # (field, value) -> (until, values)
_generation = 0  # moved on by every forget_tenants(): a lookup that raced a change is not remembered
_ATTNAMES = tuple(field.attname for field in Tenant._meta.concrete_fields)


def _instance(values: tuple[Any, ...]) -> Tenant:
    tenant = Tenant.from_db("default", _ATTNAMES, values)
    tenant.settings = copy.deepcopy(tenant.settings)
    return tenant


def cached_tenant(field: str, value: str | uuid.UUID, load: Callable[[], Tenant | None]) -> Tenant | None:
    """The tenant whose ``field`` (``slug`` or ``id``) is ``value``: remembered if active and seen within
    ``TENANT_CACHE_SECONDS``, else ``load()`` (remembered when it returns an active tenant)."""
    seconds = settings.TENANT_CACHE_SECONDS
    if seconds <= 0:
        return load()
    key = (field, str(value))
    now = time.monotonic()
    with _lock:
        entry = _remembered.get(key)
        generation = _generation
    if entry is not None and entry[0] > now:
        return _instance(entry[1])
    tenant = load()
    if tenant is not None and tenant.is_active:
        values = tuple(getattr(tenant, name) for name in _ATTNAMES)
        values = tuple(copy.deepcopy(v) if isinstance(v, dict | list) else v for v in values)
        with _lock:
            if generation == _generation:
                _remembered[key] = (now + seconds, values)
    return tenant


def forget_tenants(**_: Any) -> None:
    """Forget every remembered tenant, now and again when the current transaction commits."""
    _forget()
    transaction.on_commit(_forget)


def _forget() -> None:
    global _generation
    with _lock:
        _remembered.clear()
        _generation += 1
