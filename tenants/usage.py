"""The usage ledger: every chat answer and embedding call, and the quotas checked against it.

Quotas are daily token budgets (prompt + completion + embedding tokens, UTC calendar day) per tenant
(tenant setting ``daily_token_quota``, default ``DEFAULT_TENANT_DAILY_TOKEN_QUOTA``) and per user
(``user_daily_token_quota``, default ``DEFAULT_USER_DAILY_TOKEN_QUOTA``); ``0`` means unlimited. An API
key's service account counts as a user, with the key's own ``daily_token_quota`` when it has one.

A chat answer *reserves* its estimate before the model is called (:func:`usage_reserve`: the
prompt counted with tiktoken plus the answer budget) and the reservation is *reconciled* with the
real counts the provider reported afterwards (:func:`usage_reconcile`). Reservations are ledger rows,
taken under a per-tenant advisory lock, so concurrent questions see each other and cannot overrun the
quota together; a reservation whose answer never finished stays at its (conservative) estimate.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.errors import QuotaExceeded
from health.metrics import record_quota_refusal
from tenants.models import Tenant, UsageRecord
from tenants.selectors import tenant_effective_settings

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "embedding_tokens")


def usage_record(
    *,
    tenant: Tenant,
    user: Any | None,
    kind: str,
    model: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    embedding_tokens: int = 0,
) -> UsageRecord:
    """Write one metered call to the ledger.

    Written in SQL: every chat question writes one, and the ORM's compiled insert cost more CPU than
    the rest of the reservation."""
    record = UsageRecord(
        tenant=tenant,
        user=user if getattr(user, "pk", None) else None,
        kind=kind,
        model=model,
        prompt_tokens=max(0, int(prompt_tokens)),
        completion_tokens=max(0, int(completion_tokens)),
        embedding_tokens=max(0, int(embedding_tokens)),
        created_at=timezone.now(),
    )
    columns = ("tenant_id", "user_id", "kind", "model", *TOKEN_FIELDS, "created_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {UsageRecord._meta.db_table} ({', '.join(columns)})"
            f" VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id",
            [getattr(record, column) for column in columns],
        )
        (record.pk,) = cursor.fetchone()
    record._state.adding = False
    return record


# --- quotas ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """One daily budget and how much of it is used."""

    scope: str  # "tenant" | "user"
    limit: int  # 0: unlimited
    used: int
    resets_at: datetime

    @property
    def unlimited(self) -> bool:
        return self.limit <= 0

    @property
    def remaining(self) -> int | None:
        return None if self.unlimited else max(0, self.limit - self.used)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "limit": None if self.unlimited else self.limit,
            "used": self.used,
            "remaining": self.remaining,
            "resets_at": self.resets_at.isoformat().replace("+00:00", "Z"),
        }


def day_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The current quota day: [00:00 UTC today, 00:00 UTC tomorrow)."""
    now = (now or timezone.now()).astimezone(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def tenant_quota_limit(tenant: Tenant) -> int:
    """The tenant's daily token quota (:func:`tenants.selectors.tenant_effective_settings`)."""
    return tenant_effective_settings(tenant=tenant)["daily_token_quota"]


def user_quota_limit(tenant: Tenant, user: Any | None = None) -> int:
    """The user's daily token quota: the tenant's per-user quota, or an API key's own for its account."""
    if getattr(user, "is_service_account", False):
        # The reverse one-to-one raises an AttributeError subclass when there is no key.
        key_quota = getattr(getattr(user, "api_key", None), "daily_token_quota", None)
        if key_quota is not None:
            return int(key_quota)
    return tenant_effective_settings(tenant=tenant)["user_daily_token_quota"]


def _used_between(tenant: Tenant, user: Any | None, start: datetime, end: datetime) -> tuple[int, int]:
    """Tokens the tenant and ``user`` used in [start, end), in one statement.

    Written in SQL: every question reserves under the tenant's lock, and compiling the same query
    with the ORM (a filtered sum of three columns) cost more CPU than the rest of the reservation."""
    table = UsageRecord._meta.db_table
    total = "prompt_tokens + completion_tokens + embedding_tokens"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COALESCE(SUM({total}), 0), COALESCE(SUM({total}) FILTER (WHERE user_id = %s), 0)"
            f" FROM {table} WHERE tenant_id = %s AND created_at >= %s AND created_at < %s",
            [getattr(user, "pk", None), tenant.pk, start, end],
        )
        tenant_used, user_used = cursor.fetchone()
    return int(tenant_used), int(user_used)


def quota_status(*, tenant: Tenant, user: Any | None, now: datetime | None = None) -> list[Quota]:
    """Today's tenant quota and, when ``user`` is given, the user's: limits, used and reset time (one query)."""
    start, end = day_window(now)
    tenant_used, user_used = _used_between(tenant, user, start, end)
    quotas = [Quota("tenant", tenant_quota_limit(tenant), tenant_used, end)]
    if user is not None:
        quotas.append(Quota("user", user_quota_limit(tenant, user), user_used, end))
    return quotas


def _announce_quota_reached(tenant: Tenant | None, user: Any | None, quota: Quota) -> None:
    """``usage.quota_reached`` webhook, once per quota and day (a cache ``add`` decides who sends it).

    The refusal that triggers it rolls back its transaction (the reservation is inside one), which
    would take the delivery rows and the database cache's marker with it: inside a transaction the
    announcement is made on a thread of its own, with its own connection, and committed there.
    """
    if tenant is None:
        return
    who = str(getattr(user, "pk", "")) if quota.scope == "user" else ""

    def announce(own_connection: bool) -> None:
        from django.core.cache import cache

        from integrations.webhooks import webhook_emit  # integrations builds on tenants

        try:
            marker = f"webhook:quota_reached:{tenant.pk}:{quota.scope}:{who}:{quota.resets_at:%Y%m%d}"
            try:
                first = cache.add(marker, 1, timeout=int(timedelta(days=1).total_seconds()) + 3600)
            except Exception:  # the cache is down: announce rather than stay silent
                first = True
            if first:
                webhook_emit(
                    tenant=tenant, event_type="usage.quota_reached", data={**quota.as_dict(), "user_id": who or None}
                )
        finally:
            if own_connection:
                connection.close()

    if connection.in_atomic_block:
        thread = threading.Thread(target=announce, args=(True,), name="quota-announce", daemon=True)
        thread.start()
        thread.join(timeout=10)
    else:
        announce(False)


def _raise_if_over(
    quotas: list[Quota], needed: int, now: datetime, *, tenant: Tenant | None = None, user: Any | None = None
) -> None:
    for quota in quotas:
        if quota.unlimited:
            continue
        if quota.used + needed > quota.limit:
            _announce_quota_reached(tenant, user, quota)
            retry_after = max(1, int((quota.resets_at - now).total_seconds()) + 1)
            who = "your" if quota.scope == "user" else "your organisation's"
            record_quota_refusal(scope=quota.scope)
            raise QuotaExceeded(
                f"This needs about {needed} tokens and {who} daily quota has {quota.remaining} of"
                f" {quota.limit} left; it resets at {quota.resets_at:%H:%M} UTC.",
                details={**quota.as_dict(), "needed": needed, "retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )


def quota_check(*, tenant: Tenant, user: Any | None, needed: int = 1) -> list[Quota]:
    """Raise :class:`QuotaExceeded` (429, ``Retry-After`` until midnight UTC) unless ``needed`` tokens fit."""
    now = timezone.now()
    quotas = quota_status(tenant=tenant, user=user, now=now)
    _raise_if_over(quotas, needed, now, tenant=tenant, user=user)
    return quotas


def _lock_tenant_usage(tenant: Tenant) -> None:
    """Serialise reservations of one tenant (transaction-scoped PostgreSQL advisory lock)."""
    key = zlib.crc32(f"usage:{tenant.pk}".encode()) - 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


@transaction.atomic
def usage_reserve(
    *,
    tenant: Tenant,
    user: Any | None,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    kind: str = UsageRecord.Kind.CHAT,
) -> UsageRecord:
    """Check the quotas for an estimated call and hold the estimate in the ledger.

    Raises :class:`QuotaExceeded` when ``prompt_tokens + completion_tokens`` do not fit in what is
    left today for the tenant or the user. Call :func:`usage_reconcile` with the real counts later.
    """
    _lock_tenant_usage(tenant)
    quota_check(tenant=tenant, user=user, needed=max(0, prompt_tokens) + max(0, completion_tokens))
    return usage_record(
        tenant=tenant,
        user=user,
        kind=kind,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )


def usage_reconcile(
    *, record: UsageRecord, prompt_tokens: int, completion_tokens: int, model: str | None = None
) -> UsageRecord:
    """Replace a reservation's estimate with what the call really used."""
    record.prompt_tokens = max(0, int(prompt_tokens))
    record.completion_tokens = max(0, int(completion_tokens))
    fields = ["prompt_tokens", "completion_tokens"]
    if model:
        record.model = model
        fields.append("model")
    UsageRecord.objects.filter(pk=record.pk).update(**{f: getattr(record, f) for f in fields})
    return record


# --- summaries -------------------------------------------------------------------------------

WINDOWS = {"last_24h": timedelta(hours=24), "last_7d": timedelta(days=7)}


def _window_aggregates(prefix: str, since: datetime) -> dict[str, Any]:
    condition = Q(created_at__gte=since)
    return {
        **{f"{prefix}__{f}": Coalesce(Sum(f, filter=condition), 0) for f in TOKEN_FIELDS},
        f"{prefix}__requests": Count("id", filter=condition),
    }


def _window_dict(row: dict[str, Any], prefix: str) -> dict[str, int]:
    values = {f: int(row.get(f"{prefix}__{f}") or 0) for f in (*TOKEN_FIELDS, "requests")}
    values["total_tokens"] = sum(values[f] for f in TOKEN_FIELDS)
    return values


def usage_summary(*, tenant: Tenant, user: Any | None = None, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """Tokens and requests in the last 24 hours and 7 days, for ``user`` or (None) the whole tenant."""
    now = now or timezone.now()
    queryset = UsageRecord.objects.for_tenant(tenant).filter(
        created_at__gte=now - WINDOWS["last_7d"], created_at__lte=now
    )
    if user is not None:
        queryset = queryset.filter(user=user)
    aggregates: dict[str, Any] = {}
    for name, span in WINDOWS.items():
        aggregates.update(_window_aggregates(name, now - span))
    row = queryset.aggregate(**aggregates)
    return {name: _window_dict(row, name) for name in WINDOWS}


def usage_by_user(*, tenant: Tenant, now: datetime | None = None) -> list[dict[str, Any]]:
    """The tenant's last-24-hours and last-7-days usage per user (rows without a user under ``None``)."""
    now = now or timezone.now()
    aggregates: dict[str, Any] = {}
    for name, span in WINDOWS.items():
        aggregates.update(_window_aggregates(name, now - span))
    rows = (
        UsageRecord.objects.for_tenant(tenant)
        .filter(created_at__gte=now - WINDOWS["last_7d"], created_at__lte=now)
        .values("user_id", "user__email")
        .annotate(**aggregates)
        .order_by("user__email")
    )
    return [
        {
            "user_id": str(row["user_id"]) if row["user_id"] else None,
            "email": row["user__email"],
            **{name: _window_dict(row, name) for name in WINDOWS},
        }
        for row in rows
    ]
