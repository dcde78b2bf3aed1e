"""The usage ledger's windows, quotas (reserve/reconcile) and ``GET /api/v1/usage/``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from config.errors import QuotaExceeded
from tenants.models import UsageRecord
from tenants.usage import (
    day_window,
    quota_check,
    quota_status,
    usage_by_user,
    usage_reconcile,
    usage_reserve,
    usage_summary,
)
from tests.crosstenant import assert_envelope, assert_requires_auth
from tests.factories import UserFactory

URL = "/api/v1/usage/"


def record(
    tenant: Any,
    user: Any,
    *,
    ago: timedelta,
    kind: str = "chat",
    prompt: int = 0,
    completion: int = 0,
    embedding: int = 0,
) -> UsageRecord:
    row = UsageRecord.objects.create(
        tenant=tenant,
        user=user,
        kind=kind,
        model="m",
        prompt_tokens=prompt,
        completion_tokens=completion,
        embedding_tokens=embedding,
    )
    UsageRecord.objects.filter(pk=row.pk).update(created_at=timezone.now() - ago)
    return row


@pytest.fixture
def history(tenant: Any, user: Any, admin_user: Any, other_user: Any) -> None:
    record(tenant, user, ago=timedelta(hours=1), prompt=100, completion=50)
    record(tenant, user, ago=timedelta(hours=23), kind="embedding", embedding=1000)
    record(tenant, user, ago=timedelta(days=2), prompt=10, completion=5)
    record(tenant, user, ago=timedelta(days=8), prompt=99999)  # outside both windows
    record(tenant, admin_user, ago=timedelta(hours=2), prompt=7, completion=3)
    record(tenant, None, ago=timedelta(hours=3), kind="embedding", embedding=11)
    record(other_user.tenant, other_user, ago=timedelta(hours=1), prompt=5555)


@pytest.mark.django_db
def test_summary_windows(tenant: Any, user: Any, history: None) -> None:
    summary = usage_summary(tenant=tenant, user=user)
    assert summary["last_24h"] == {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "embedding_tokens": 1000,
        "total_tokens": 1150,
        "requests": 2,
    }
    assert summary["last_7d"] == {
        "prompt_tokens": 110,
        "completion_tokens": 55,
        "embedding_tokens": 1000,
        "total_tokens": 1165,
        "requests": 3,
    }
    whole = usage_summary(tenant=tenant)
    assert whole["last_24h"]["total_tokens"] == 1150 + 10 + 11 and whole["last_24h"]["requests"] == 4
    rows = {row["email"]: row for row in usage_by_user(tenant=tenant)}
    assert set(rows) == {"admin@acme.test", "member@acme.test", None}
    assert rows["admin@acme.test"]["last_7d"]["total_tokens"] == 10
    assert rows[None]["last_24h"]["embedding_tokens"] == 11


@pytest.mark.django_db
def test_day_window_and_quota_status(tenant: Any, user: Any, settings: Any) -> None:
    start, end = day_window(datetime(2026, 3, 5, 17, 30, tzinfo=UTC))
    assert (start, end) == (datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC))
    settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA = 1000
    settings.DEFAULT_USER_DAILY_TOKEN_QUOTA = 100
    record(tenant, user, ago=timedelta(0), prompt=40)
    tenant_quota, user_quota = quota_status(tenant=tenant, user=user)
    assert (tenant_quota.limit, tenant_quota.used, tenant_quota.remaining) == (1000, 40, 960)
    assert (user_quota.limit, user_quota.used, user_quota.remaining) == (100, 40, 60)
    tenant.settings = {"daily_token_quota": 0, "user_daily_token_quota": 50}
    tenant.save()
    tenant_quota, user_quota = quota_status(tenant=tenant, user=user)
    assert tenant_quota.unlimited and tenant_quota.remaining is None and tenant_quota.as_dict()["limit"] is None
    assert user_quota.limit == 50 and user_quota.remaining == 10


@pytest.mark.django_db
def test_reserve_refuses_over_quota_and_reconciles(tenant: Any, user: Any) -> None:
    tenant.settings = {"user_daily_token_quota": 1000}
    tenant.save()
    reservation = usage_reserve(tenant=tenant, user=user, model="gpt-4o-mini", prompt_tokens=300, completion_tokens=500)
    assert quota_status(tenant=tenant, user=user)[1].used == 800
    with pytest.raises(QuotaExceeded) as info:
        usage_reserve(tenant=tenant, user=user, model="gpt-4o-mini", prompt_tokens=100, completion_tokens=500)
    error = info.value
    assert error.status_code == 429 and error.code == "quota_exceeded"
    assert error.details["scope"] == "user" and error.details["remaining"] == 200 and error.details["needed"] == 600
    now = timezone.now()
    assert abs(int(error.headers["Retry-After"]) - (day_window(now)[1] - now).total_seconds()) <= 2
    # the real usage was smaller: reconciling frees the difference
    usage_reconcile(record=reservation, prompt_tokens=280, completion_tokens=20)
    reservation.refresh_from_db()
    assert (reservation.prompt_tokens, reservation.completion_tokens) == (280, 20)
    usage_reserve(tenant=tenant, user=user, model="gpt-4o-mini", prompt_tokens=100, completion_tokens=500)
    # yesterday does not count against today
    record(tenant, user, ago=timedelta(days=1, hours=1), prompt=100000)
    quota_check(tenant=tenant, user=user, needed=1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_reservations_cannot_overrun_the_quota(tenant: Any, user: Any) -> None:
    """Reservations take a per-tenant lock: of 8 racing 300-token asks against 1000, exactly 3 fit."""
    tenant.settings = {"daily_token_quota": 1000}
    tenant.save()
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def ask() -> None:
        try:
            barrier.wait()
            usage_reserve(tenant=tenant, user=user, model="m", prompt_tokens=100, completion_tokens=200)
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 5
    assert quota_status(tenant=tenant, user=None)[0].used == 900


@pytest.mark.django_db
def test_usage_endpoint_for_a_member(api: Any, user: Any, tenant: Any, history: None, settings: Any) -> None:
    settings.DEFAULT_USER_DAILY_TOKEN_QUOTA = 2000
    settings.DEFAULT_TENANT_DAILY_TOKEN_QUOTA = 5000
    body = api.get(URL).json()
    assert body["scope"] == "user"
    assert body["last_24h"]["total_tokens"] == 1150 and body["last_7d"]["requests"] == 3
    assert "users" not in body
    user_quota = body["quota"]["user"]
    assert user_quota["limit"] == 2000 and user_quota["scope"] == "user"
    # "used" is today's (UTC) usage; the 24-hour window may reach into yesterday
    today = usage_today(tenant, user)
    assert user_quota["used"] == today and user_quota["remaining"] == 2000 - today
    assert user_quota["resets_at"].endswith("T00:00:00Z")
    assert body["quota"]["tenant"]["limit"] == 5000
    assert body["remaining_today"] == min(user_quota["remaining"], body["quota"]["tenant"]["remaining"])


def usage_today(tenant: Any, user: Any) -> int:
    start, _ = day_window()
    return sum(r.total_tokens for r in UsageRecord.objects.filter(tenant=tenant, user=user, created_at__gte=start))


@pytest.mark.django_db
def test_usage_endpoint_for_the_tenant(api: Any, admin_api: Any, history: None) -> None:
    body = admin_api.get(URL + "?scope=tenant").json()
    assert body["scope"] == "tenant"
    assert body["last_24h"]["total_tokens"] == 1171 and body["last_24h"]["requests"] == 4
    assert {row["email"] for row in body["users"]} == {"admin@acme.test", "member@acme.test", None}
    assert all(row["last_24h"]["prompt_tokens"] != 5555 for row in body["users"])  # no other tenant
    # the admin's own view is only theirs
    own = admin_api.get(URL).json()
    assert own["last_7d"]["total_tokens"] == 10
    assert_envelope(api.get(URL + "?scope=tenant"), 403, "permission_denied")
    assert_envelope(admin_api.get(URL + "?scope=everyone"), 400, "validation_error")


@pytest.mark.django_db
def test_usage_endpoint_auth_and_tenancy(
    anon_api: Any, client_for: Any, user: Any, other_user: Any, history: None
) -> None:
    assert_requires_auth(URL, anon_api)
    theirs = client_for(other_user).get(URL).json()
    assert theirs["last_24h"]["prompt_tokens"] == 5555 and theirs["last_7d"]["requests"] == 1
    # a token for one tenant with the other's header
    assert_envelope(client_for(user, tenant=other_user.tenant).get(URL), 401)
    colleague = UserFactory(tenant=user.tenant, email="new@acme.test")
    empty = client_for(colleague).get(URL).json()
    assert empty["last_7d"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "embedding_tokens": 0,
        "total_tokens": 0,
        "requests": 0,
    }


@pytest.mark.django_db
def test_a_record_keeps_no_anonymous_user_and_no_negative_counts(tenant: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    from tenants.usage import usage_record

    row = usage_record(
        tenant=tenant, user=AnonymousUser(), kind="chat", model="m", prompt_tokens=-5, completion_tokens=-1
    )
    row.refresh_from_db()
    assert row.user_id is None
    assert (row.prompt_tokens, row.completion_tokens, row.embedding_tokens) == (0, 0, 0)


@pytest.mark.django_db
def test_reconcile_stores_the_real_counts_and_model(tenant: Any, user: Any) -> None:
    reservation = usage_reserve(tenant=tenant, user=user, model="estimate", prompt_tokens=300, completion_tokens=500)
    usage_reconcile(record=reservation, prompt_tokens=0, completion_tokens=-3, model="gpt-4o-mini-2024")
    stored = UsageRecord.objects.get(pk=reservation.pk)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.model) == (0, 0, "gpt-4o-mini-2024")
    usage_reconcile(record=stored, prompt_tokens=7, completion_tokens=9)  # no model: the stored one stays
    stored = UsageRecord.objects.get(pk=reservation.pk)
    assert (stored.prompt_tokens, stored.completion_tokens, stored.model) == (7, 9, "gpt-4o-mini-2024")


@pytest.mark.django_db
def test_usage_by_user_lists_the_last_seven_days_up_to_now(tenant: Any, user: Any, admin_user: Any) -> None:
    record(tenant, admin_user, ago=timedelta(days=10), prompt=40)  # older than both windows: not listed
    record(tenant, user, ago=timedelta(hours=30), prompt=10)
    record(tenant, None, ago=timedelta(hours=2), embedding=3)
    rows = usage_by_user(tenant=tenant)
    assert [(row["user_id"], row["email"]) for row in rows] == [(str(user.pk), user.email), (None, None)]
    assert rows[0]["last_7d"]["prompt_tokens"] == 10 and rows[0]["last_24h"]["requests"] == 0
    # as seen a day and a half ago, the later rows had not happened yet
    earlier = usage_by_user(tenant=tenant, now=timezone.now() - timedelta(hours=36))
    assert [row["email"] for row in earlier] == []
    assert usage_summary(tenant=tenant, now=timezone.now() - timedelta(hours=36))["last_7d"]["requests"] == 0


@pytest.mark.django_db(transaction=True)
def test_quota_reached_is_announced_once_per_quota_and_day(tenant: Any, user: Any, admin_user: Any) -> None:
    """A refusal queues one ``usage.quota_reached`` webhook per quota and day, although the refused
    reservation's transaction rolls back: the user quota's names the user, the tenant quota's nobody."""
    from integrations.models import WebhookDelivery, WebhookEndpoint

    WebhookEndpoint.objects.create(
        tenant=tenant, url="https://hooks.example.test/usage", events=["usage.quota_reached"], secret="s"
    )
    tenant.settings = {"daily_token_quota": 1000, "user_daily_token_quota": 100}
    tenant.save()
    for _ in range(2):
        with pytest.raises(QuotaExceeded):
            usage_reserve(tenant=tenant, user=user, model="m", prompt_tokens=60, completion_tokens=60)
    (delivery,) = WebhookDelivery.objects.filter(tenant=tenant)
    assert delivery.event_type == "usage.quota_reached" and delivery.payload["type"] == "usage.quota_reached"
    data = delivery.payload["data"]
    assert (data["scope"], data["user_id"], data["limit"], data["used"]) == ("user", str(user.pk), 100, 0)

    record(tenant, admin_user, ago=timedelta(0), prompt=950)
    for _ in range(2):
        with pytest.raises(QuotaExceeded):
            quota_check(tenant=tenant, user=admin_user, needed=90)
    tenant_deliveries = [d.payload["data"] for d in WebhookDelivery.objects.filter(tenant=tenant)]
    assert sorted((d["scope"], d["user_id"]) for d in tenant_deliveries) == [("tenant", None), ("user", str(user.pk))]
    # the admin is over their own quota too: that is another quota, announced with their id
    with pytest.raises(QuotaExceeded) as refused:
        quota_check(tenant=tenant, user=admin_user, needed=5)
    assert refused.value.details["scope"] == "user"
    announced = sorted(
        (d.payload["data"]["scope"], d.payload["data"]["user_id"]) for d in WebhookDelivery.objects.all()
    )
    assert announced == sorted([("tenant", None), ("user", str(user.pk)), ("user", str(admin_user.pk))])


def test_a_refusal_names_whose_quota_and_waits_until_the_reset() -> None:
    """The message says whose quota ran out; Retry-After is the seconds to the reset, rounded up."""
    from health.metrics import QUOTA_REFUSALS
    from tenants.usage import Quota, _raise_if_over

    now = datetime(2026, 3, 5, 23, 58, 19, 500_000, tzinfo=UTC)
    reset = datetime(2026, 3, 6, tzinfo=UTC)  # 100.5 s later
    refused_before = QUOTA_REFUSALS.labels(scope="user")._value.get()
    _raise_if_over([Quota("tenant", 0, 10**9, reset), Quota("user", 100, 99, reset)], 1, now)  # fits: no error
    with pytest.raises(QuotaExceeded) as user_refusal:
        _raise_if_over([Quota("tenant", 1000, 0, reset), Quota("user", 100, 99, reset)], 2, now)
    assert user_refusal.value.headers["Retry-After"] == "101"
    assert user_refusal.value.details["retry_after"] == 101 and user_refusal.value.details["needed"] == 2
    assert user_refusal.value.message == (
        "This needs about 2 tokens and your daily quota has 1 of 100 left; it resets at 00:00 UTC."
    )
    assert QUOTA_REFUSALS.labels(scope="user")._value.get() == refused_before + 1
    with pytest.raises(QuotaExceeded) as tenant_refusal:
        _raise_if_over([Quota("tenant", 1000, 999, reset)], 5, now)
    assert tenant_refusal.value.message.startswith("This needs about 5 tokens and your organisation's daily quota")
    assert tenant_refusal.value.details["scope"] == "tenant"


@pytest.mark.django_db(transaction=True)  # outside a transaction the announcement is made on this connection
def test_the_once_a_day_marker_outlives_the_quota_day(tenant: Any, user: Any) -> None:
    """A refusal just after midnight must not be announced again before the next midnight."""
    from integrations.models import WebhookDelivery, WebhookEndpoint
    from tenants.usage import Quota, _announce_quota_reached

    WebhookEndpoint.objects.create(
        tenant=tenant, url="https://hooks.example.test/usage", events=["usage.quota_reached"], secret="s"
    )
    resets_at = timezone.now() + timedelta(days=1)  # as if refused at 00:00 UTC
    _announce_quota_reached(tenant, user, Quota("user", 10, 10, resets_at))
    assert WebhookDelivery.objects.filter(tenant=tenant).count() == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT expires FROM documind_cache WHERE cache_key LIKE %s", ["%webhook:quota_reached:%"])
        (expires,) = cursor.fetchone()
    assert expires >= resets_at - timedelta(seconds=1)  # the database cache keeps whole seconds


@pytest.mark.django_db(transaction=True)  # outside a transaction the announcement is made on this connection
def test_an_announcement_keeps_the_callers_connection_and_is_made_when_the_cache_is_down(
    tenant: Any, user: Any, settings: Any
) -> None:
    """Only the announcing thread's own connection is closed, never the caller's; with the cache (which holds
    the once-a-day marker) unreachable the quota is announced rather than kept quiet."""
    from integrations.models import WebhookDelivery, WebhookEndpoint
    from tenants.usage import Quota, _announce_quota_reached

    WebhookEndpoint.objects.create(
        tenant=tenant, url="https://hooks.example.test/usage", events=["usage.quota_reached"], secret="s"
    )
    resets_at = timezone.now() + timedelta(hours=1)
    connection.ensure_connection()
    callers = connection.connection
    _announce_quota_reached(tenant, user, Quota("user", 10, 10, resets_at))
    assert connection.connection is callers
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:9/0"}
    }
    _announce_quota_reached(tenant, user, Quota("tenant", 10, 10, resets_at))
    scopes = sorted(d.payload["data"]["scope"] for d in WebhookDelivery.objects.filter(tenant=tenant))
    assert scopes == ["tenant", "user"]


@pytest.mark.django_db
def test_quota_check_asks_for_one_token_unless_told(tenant: Any, user: Any) -> None:
    tenant.settings = {"daily_token_quota": 100, "user_daily_token_quota": 0}
    tenant.save()
    record(tenant, user, ago=timedelta(0), prompt=99)
    quota_check(tenant=tenant, user=user)  # the last token fits
    record(tenant, user, ago=timedelta(0), prompt=1)
    with pytest.raises(QuotaExceeded) as refused:
        quota_check(tenant=tenant, user=user)
    assert refused.value.details["needed"] == 1 and refused.value.details["remaining"] == 0


@pytest.mark.django_db
def test_usage_record_writes_the_row_it_returns(tenant: Any, user: Any) -> None:
    from tenants.usage import usage_record

    chat = usage_record(tenant=tenant, user=user, kind="chat", model="gpt-x", prompt_tokens=3, completion_tokens=4)
    embedding = usage_record(tenant=tenant, user=None, kind="embedding", model="embed-y", embedding_tokens=5)
    fields = ("tenant_id", "user_id", "kind", "model", "prompt_tokens", "completion_tokens", "embedding_tokens")
    for returned in (chat, embedding):
        stored = UsageRecord.objects.get(pk=returned.pk)
        assert [getattr(stored, f) for f in fields] == [getattr(returned, f) for f in fields]
    assert (chat.user_id, chat.kind, chat.model, chat.embedding_tokens) == (user.pk, "chat", "gpt-x", 0)
    assert (embedding.user_id, embedding.kind, embedding.model) == (None, "embedding", "embed-y")
    assert (embedding.prompt_tokens, embedding.completion_tokens, embedding.embedding_tokens) == (0, 0, 5)
    chat.model = "gpt-z"
    chat.save()  # the returned instance is a stored row: saving it updates, never inserts a second
    assert UsageRecord.objects.filter(tenant=tenant).count() == 2
