"""Retention of the audit log."""

from __future__ import annotations

from celery import shared_task

from audit.services import audit_purge


@shared_task(name="audit.purge")
def audit_purge_task() -> int:
    """Delete audit rows older than ``AUDIT_RETENTION_DAYS`` (daily, from beat)."""
    return audit_purge()
