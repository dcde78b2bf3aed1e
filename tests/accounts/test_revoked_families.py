"""Revoked sign-ins (``RevokedTokenFamily``) are kept while a token of theirs could still be valid, then purged."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.models import RevokedTokenFamily, User
from accounts.tokens import (
    REFRESH_GRACE_SECONDS,
    REVOKED_FAMILY_MARGIN,
    TokenRefused,
    tokens_for_user,
    tokens_logout,
    tokens_rotate,
)
from config.celery import app

pytestmark = pytest.mark.django_db

KEEP_FOR = api_settings.REFRESH_TOKEN_LIFETIME + REVOKED_FAMILY_MARGIN


def revoked(user: User, ago: timedelta) -> RevokedTokenFamily:
    row = RevokedTokenFamily.objects.create(pk=uuid.uuid4(), user=user, reason="logout")
    RevokedTokenFamily.objects.filter(pk=row.pk).update(revoked_at=timezone.now() - ago)
    return row


def purge() -> int:
    app.autodiscover_tasks(force=True)
    return app.tasks["accounts.purge_revoked_families"].apply().get()


def test_the_purge_deletes_only_rows_past_the_refresh_lifetime_and_margin(user: User, other_user: User) -> None:
    old = [revoked(user, KEEP_FOR + timedelta(minutes=1)), revoked(other_user, timedelta(days=400))]
    kept = [revoked(user, KEEP_FOR - timedelta(minutes=1)), revoked(user, timedelta(0))]

    assert purge() == 2
    assert set(RevokedTokenFamily.objects.values_list("pk", flat=True)) == {row.pk for row in kept}
    assert not RevokedTokenFamily.objects.filter(pk__in=[row.pk for row in old]).exists()
    assert purge() == 0


def test_beat_runs_the_purge_daily() -> None:
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "accounts.purge_revoked_families"]
    assert [e["schedule"] for e in entries] == [24 * 3600.0]


def _newest_expiry(user: User) -> Any:
    return OutstandingToken.objects.filter(user=user).order_by("-expires_at").values_list("expires_at", flat=True)[0]


@pytest.mark.parametrize("how", ["logout", "reuse"])
def test_no_token_of_a_revoked_family_outlives_its_row(user: User, how: str) -> None:
    """What the purge relies on: once revoked, a family gets no new token, so the newest expires within
    the refresh lifetime of the revocation (and the row is kept that long and a margin)."""
    first = tokens_for_user(user)
    second = tokens_rotate(raw=first["refresh"], tenant_id=user.tenant_id)
    assert tokens_rotate(raw=first["refresh"], tenant_id=user.tenant_id) == second  # a retry in the grace window
    if how == "logout":
        tokens_logout(user=user, raw=second["refresh"])
    else:
        BlacklistedToken.objects.update(blacklisted_at=timezone.now() - timedelta(seconds=REFRESH_GRACE_SECONDS + 1))
        with pytest.raises(TokenRefused):
            tokens_rotate(raw=first["refresh"], tenant_id=user.tenant_id)
    row = RevokedTokenFamily.objects.get(user=user)
    for raw in (first["refresh"], second["refresh"]):
        with pytest.raises(TokenRefused):
            tokens_rotate(raw=raw, tenant_id=user.tenant_id)

    assert _newest_expiry(user) <= row.revoked_at + api_settings.REFRESH_TOKEN_LIFETIME


def purge_expired() -> int:
    app.autodiscover_tasks(force=True)
    return app.tasks["accounts.purge_expired_refresh_tokens"].apply().get()


def _expire(raw_refresh: str, ago: timedelta) -> OutstandingToken:
    jti = token_backend.decode(raw_refresh)[api_settings.JTI_CLAIM]
    outstanding = OutstandingToken.objects.get(jti=jti)
    OutstandingToken.objects.filter(pk=outstanding.pk).update(expires_at=timezone.now() - ago)
    return outstanding


def test_expired_refresh_tokens_are_purged_with_their_blacklist_rows(user: User, other_user: User) -> None:
    past_margin = REVOKED_FAMILY_MARGIN + timedelta(minutes=1)
    rotated = tokens_for_user(user)
    successor = tokens_rotate(raw=rotated["refresh"], tenant_id=user.tenant_id)  # blacklists the first
    gone = [
        _expire(rotated["refresh"], past_margin),
        _expire(tokens_for_user(other_user)["refresh"], timedelta(days=30)),
    ]
    within_margin = _expire(tokens_for_user(user)["refresh"], REVOKED_FAMILY_MARGIN - timedelta(minutes=1))
    live = tokens_for_user(other_user)

    assert purge_expired() == 2
    assert not OutstandingToken.objects.filter(pk__in=[t.pk for t in gone]).exists()
    assert not BlacklistedToken.objects.filter(token_id__in=[t.pk for t in gone]).exists()
    assert OutstandingToken.objects.filter(pk=within_margin.pk).exists()
    assert purge_expired() == 0
    # tokens that are still valid are untouched and keep rotating
    assert tokens_rotate(raw=successor["refresh"], tenant_id=user.tenant_id)["refresh"]
    assert tokens_rotate(raw=live["refresh"], tenant_id=other_user.tenant_id)["refresh"]


def test_beat_purges_expired_refresh_tokens_daily() -> None:
    entries = [
        e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "accounts.purge_expired_refresh_tokens"
    ]
    assert [e["schedule"] for e in entries] == [24 * 3600.0]
