"""The watchdog: processing tasks without a heartbeat past the timeout become failed (``stalled``)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from config.celery import app
from tasks.models import Task
from tasks.services import task_fail_stalled
from tests.tasks.factories import TaskFactory, background

TIMEOUT = settings.TASK_STALL_TIMEOUT_SECONDS


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def rows(user: User) -> dict[str, Task]:
    """One row per case, named after what the watchdog must do with it."""
    rows = {
        "silent": background(user, heartbeat_at=ago(TIMEOUT + 60), started_at=ago(TIMEOUT + 120)),
        "never_beat": background(user, heartbeat_at=None, started_at=ago(TIMEOUT + 5)),
        "alive": background(user, heartbeat_at=ago(5), started_at=ago(TIMEOUT * 3)),
        "just_started": background(user, heartbeat_at=None, started_at=ago(5)),
        "old_pending": background(user, Task.Status.PENDING),
        "old_failed": background(user, Task.Status.FAILED, error={"type": "value_error", "message": "x"}),
        "todo_in_progress": TaskFactory(owner=user, status=Task.Status.PROCESSING),  # people have no heartbeat
        "no_timestamps": background(user, heartbeat_at=None, started_at=None),
    }
    # updated_at is auto_now: age the rows that the watchdog must judge by it
    Task.objects.filter(pk__in=[r.pk for r in rows.values()]).update(updated_at=ago(TIMEOUT * 4))
    return rows


def status_of(row: Task) -> Task:
    return Task.objects.get(pk=row.pk)


def test_fails_only_silent_processing_tasks(rows: dict[str, Task], django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        stalled = task_fail_stalled()

    assert {t.pk for t in stalled} == {rows["silent"].pk, rows["never_beat"].pk, rows["no_timestamps"].pk}
    assert len(callbacks) == 3  # one task.progress event each, after the commit
    for name in ("silent", "never_beat", "no_timestamps"):
        row = status_of(rows[name])
        assert row.status == Task.Status.FAILED and row.finished_at is not None
        assert row.error["type"] == "stalled"
        assert f"more than {TIMEOUT} s" in row.error["message"]
    for name in ("alive", "just_started", "todo_in_progress"):
        assert status_of(rows[name]).status == Task.Status.PROCESSING
    assert status_of(rows["old_pending"]).status == Task.Status.PENDING
    assert status_of(rows["old_failed"]).error["type"] == "value_error"
    # a second pass finds nothing more
    assert task_fail_stalled() == []


def test_the_timeout_is_a_setting(rows: dict[str, Task], settings: Any) -> None:
    settings.TASK_STALL_TIMEOUT_SECONDS = TIMEOUT * 10
    assert task_fail_stalled() == []
    settings.TASK_STALL_TIMEOUT_SECONDS = 1
    assert rows["alive"].pk in {t.pk for t in task_fail_stalled()}


def test_management_command(rows: dict[str, Task]) -> None:
    out = StringIO()
    call_command("task_watchdog", stdout=out)
    assert "3 stalled task(s) marked failed." in out.getvalue()
    assert str(rows["silent"].pk) in out.getvalue()

    out = StringIO()
    call_command("task_watchdog", "--timeout", "1", stdout=out)
    assert "2 stalled task(s) marked failed." in out.getvalue()  # alive and just_started, by a stricter timeout
    assert status_of(rows["alive"]).error["type"] == "stalled"
    assert status_of(rows["todo_in_progress"]).status == Task.Status.PROCESSING

    with pytest.raises(CommandError):
        call_command("task_watchdog", "--timeout", "-5")


def test_celery_task_is_registered_under_the_beat_schedules_name(rows: dict[str, Task]) -> None:
    app.autodiscover_tasks(force=True)
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "tasks.watchdog" in scheduled
    watchdog = app.tasks["tasks.watchdog"]

    assert watchdog.apply().get() == 3
    assert status_of(rows["silent"]).status == Task.Status.FAILED
