"""Housekeeping of the sign-in tables."""

from __future__ import annotations

from celery import shared_task

from accounts.tokens import expired_refresh_tokens_purge, revoked_families_purge


@shared_task(name="accounts.purge_revoked_families", ignore_result=True)
def revoked_families_purge_task() -> int:
    """Delete revoked-family rows older than the refresh lifetime and its margin (daily, from beat)."""
    return revoked_families_purge()


@shared_task(name="accounts.purge_expired_refresh_tokens", ignore_result=True)
def expired_refresh_tokens_purge_task() -> int:
    """Delete refresh-token records expired past the leeway and margin (daily, from beat)."""
    return expired_refresh_tokens_purge()
