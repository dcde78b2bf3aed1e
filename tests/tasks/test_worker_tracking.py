"""The tracking mechanism against a real Celery worker subprocess (filesystem broker, and Redis when available)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from accounts.models import User
from tasks.events import user_group
from tasks.models import Task
from tasks.services import task_cancel, task_create_background, task_enqueue, task_fail_stalled
from tests.conftest import make_client
from tests.crosstenant import assert_envelope
from tests.tasks.conftest import CeleryWorker, settings_broker_variant, wait_for
from tests.tasks.worker_tasks import flaky, run_steps

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STEPS_KIND = "test_steps"


def make_row(
    owner: User, *, kind: str = STEPS_KIND, celery_task: Any = run_steps, payload: dict[str, Any] | None = None
) -> Task:
    """A ledger row naming ``celery_task`` (what the API's retry runs again)."""
    return task_create_background(
        tenant=owner.tenant, owner=owner, kind=kind, title="worker test", celery_task=celery_task, payload=payload
    )


def reload(row: Task) -> Task:
    return Task.objects.get(pk=row.pk)


def wait_status(row: Task, *statuses: str, timeout: float = 30.0, worker: CeleryWorker | None = None) -> Task:
    def current() -> Task | None:
        fresh = reload(row)
        return fresh if fresh.status in statuses else None

    def why() -> str:
        fresh = reload(row)
        tail = worker.log()[-3000:] if worker else ""
        return f"task {row.pk} to become {statuses}; it is {fresh.status} ({fresh.stage}, {fresh.error})\n{tail}"

    return wait_for(current, timeout=timeout, message=why)


def trace_lines(path: Path, run: str | None = None) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    if run is None:
        return lines
    return [line.split(" ", 1)[1] for line in lines if line.startswith(run + " ")]


def test_progress_and_success_are_recorded(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    row = make_row(user)
    run = worker.enqueue(run_steps, row, steps=3, trace=str(trace))

    done = wait_status(row, Task.Status.COMPLETED, worker=worker)

    assert trace_lines(trace, run) == ["start", "step 1", "step 2", "step 3", "done"]
    assert done.attempts == 1
    assert done.celery_task_id == run
    assert (done.progress, done.stage) == (100, "done")
    assert done.result == {"steps": 3}
    assert done.error == {}
    assert done.started_at and done.heartbeat_at and done.finished_at
    assert done.started_at <= done.heartbeat_at <= done.finished_at


def test_failure_records_the_error(worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    row = make_row(user)
    run = worker.enqueue(run_steps, row, steps=3, fail_at=2, trace=str(trace))

    failed = wait_status(row, Task.Status.FAILED, worker=worker)

    assert trace_lines(trace, run) == ["start", "step 1", "step 2"]
    assert failed.error == {"type": "value_error", "message": "boom at step 2"}
    assert (failed.progress, failed.stage) == (50, "step2")
    assert failed.attempts == 1
    assert failed.finished_at is not None


def test_autoretry_gives_up_after_max_retries(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    row = make_row(user, kind="test_flaky", celery_task=flaky)
    run = worker.enqueue(flaky, row, failures=10, trace=str(trace))

    failed = wait_status(row, Task.Status.FAILED, worker=worker)

    assert trace_lines(trace, run) == ["attempt 0", "attempt 1", "attempt 2"]  # max_retries=2
    assert failed.attempts == 3
    assert failed.error == {"type": "connection_error", "message": "upstream unreachable on attempt 3"}


def test_cancel_through_the_api_stops_the_worker_at_its_next_checkpoint(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    row = make_row(user)
    run = worker.enqueue(run_steps, row, steps=50, delay=0.3, trace=str(trace))
    wait_for(lambda: "step 2" in trace_lines(trace, run), message=lambda: f"step 2\n{worker.log()[-3000:]}")

    response = make_client(user).post(f"/api/v1/tasks/{row.pk}/cancel/")

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "cancelled"
    steps_when_cancelled = sum(line.startswith("step") for line in trace_lines(trace, run))
    wait_for(lambda: "stopped" in trace_lines(trace, run), message=lambda: f"the run to stop\n{worker.log()[-3000:]}")
    lines = trace_lines(trace, run)
    assert lines[-1] == "stopped"
    # at most the step that was sleeping when the cancel arrived, then the checkpoint stopped it
    assert sum(line.startswith("step") for line in lines) <= steps_when_cancelled + 1 < 50
    cancelled = reload(row)
    assert (cancelled.status, cancelled.stage) == (Task.Status.CANCELLED, "cancelled")
    assert cancelled.progress < 100 and cancelled.finished_at is not None
    assert cancelled.error == {}


def test_a_task_cancelled_before_it_starts_never_runs(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    row = make_row(user)
    task_cancel(task=row)
    run = worker.enqueue(run_steps, row, steps=2, trace=str(trace))

    # the worker drops it: as revoked when the broadcast reached it, else as "ignored" by before_start
    pattern = re.compile(rf"{run}\] ignored|Discarding revoked task: \S+\[{run}\]")
    wait_for(lambda: pattern.search(worker.log()), message=lambda: f"the run to be dropped\n{worker.log()[-3000:]}")
    assert not trace.exists()
    row = reload(row)
    assert (row.status, row.attempts, row.started_at) == (Task.Status.CANCELLED, 0, None)


def test_watchdog_fails_a_silent_task_and_the_live_worker_stops_at_its_checkpoint(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    row = make_row(user)
    run = worker.enqueue(run_steps, row, steps=50, delay=0.3, trace=str(trace))
    wait_for(lambda: "step 1" in trace_lines(trace, run), message=lambda: f"step 1\n{worker.log()[-3000:]}")

    stalled = task_fail_stalled(timeout_seconds=0)

    assert [t.pk for t in stalled] == [row.pk]
    wait_for(lambda: "stopped" in trace_lines(trace, run), message=lambda: f"the run to stop\n{worker.log()[-3000:]}")
    row = reload(row)
    assert row.status == Task.Status.FAILED  # not overwritten by the stopped run
    assert row.error["type"] == "stalled"


@pytest.mark.parametrize("worker", [settings_broker_variant()], indirect=True)
def test_retry_through_the_api_runs_a_failed_task_again(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace, ok = tmp_path / "trace", tmp_path / "ok"
    payload = {"steps": 2, "fail_unless": str(ok), "trace": str(trace)}
    with transaction.atomic():
        row = make_row(user, payload=payload)
        first = task_enqueue(task=row, celery_task=run_steps, kwargs=payload)
    failed = wait_status(row, Task.Status.FAILED, worker=worker)
    assert failed.error["type"] == "file_not_found_error"
    ok.touch()

    response = make_client(user).post(f"/api/v1/tasks/{row.pk}/retry/")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["status"], body["error"], body["progress"]) == ("pending", None, 0)
    done = wait_status(row, Task.Status.COMPLETED, worker=worker)
    assert done.celery_task_id != first
    assert done.attempts == 2
    assert done.error == {} and done.result == {"steps": 2}
    assert trace_lines(trace, done.celery_task_id)[-1] == "done"
    # and a completed task cannot be retried
    assert_envelope(make_client(user).post(f"/api/v1/tasks/{row.pk}/retry/"), 409, "conflict")


@pytest.mark.parametrize("worker", [settings_broker_variant()], indirect=True)
def test_cancel_then_retry_leaves_the_new_attempt_alone(
    worker: CeleryWorker, transactional_db: Any, user: User, tmp_path: Path
) -> None:
    trace = tmp_path / "trace"
    payload = {"steps": 6, "delay": 0.3, "trace": str(trace)}
    with transaction.atomic():
        row = make_row(user, payload=payload)
        first = task_enqueue(task=row, celery_task=run_steps, kwargs=payload)
    wait_for(lambda: "step 1" in trace_lines(trace, first), message=lambda: f"step 1\n{worker.log()[-3000:]}")
    client = make_client(user)

    assert client.post(f"/api/v1/tasks/{row.pk}/cancel/").status_code == 200
    assert client.post(f"/api/v1/tasks/{row.pk}/retry/").status_code == 202

    done = wait_status(row, Task.Status.COMPLETED, worker=worker)
    second = done.celery_task_id
    assert second != first
    assert trace_lines(trace, first)[-1] == "stopped"
    assert trace_lines(trace, second) == ["start", *[f"step {i}" for i in range(1, 7)], "done"]
    # the first run's bookkeeping, after it stopped, did not touch the second attempt's row
    assert (done.attempts, done.stage, done.progress) == (2, "done", 100)


# --- task.progress events, sent by the worker process, received here -------------------------


async def subscribe(user_id: object) -> tuple[Any, str]:
    """A channel in ``user_id``'s group, already listening.

    channels_postgres drops a message whose channel nobody in this process has started receiving on
    yet (when its listener already runs), so: start receiving, then ping until a ping arrives.
    """
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(user_group(user_id), channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    for _ in range(50):
        await layer.send(channel, {"type": "test.ping"})
        done, _ = await asyncio.wait({receiving}, timeout=0.2)
        if done:
            break
    assert receiving.done() and receiving.result()["type"] == "test.ping"
    return layer, channel


async def receive_events(layer: Any, channel: str, *, until: str | None, timeout: float) -> list[dict[str, Any]]:
    """``task.progress`` events (pings left out) until one has status ``until``, or until ``timeout``."""
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = await layer.receive(channel)
                if event["type"] == "test.ping":
                    continue
                events.append(event)
                if until is not None and event.get("status") == until:
                    return events
    except TimeoutError:
        if until is not None:
            raise AssertionError(f"no {until!r} event within {timeout} s; got {events}") from None
    return events


async def test_progress_events_reach_the_owners_group_from_the_worker(
    worker: CeleryWorker, transactional_db: Any, user: User
) -> None:
    from tests.factories import UserFactory

    colleague = await sync_to_async(UserFactory)(tenant=user.tenant, email="colleague@acme.test")
    layer, channel = await subscribe(user.pk)
    _, colleague_channel = await subscribe(colleague.pk)
    row = await sync_to_async(make_row)(user)

    await sync_to_async(worker.enqueue)(run_steps, row, steps=3)
    events = await receive_events(layer, channel, until="completed", timeout=30)

    assert all(e["type"] == "task.progress" and e["task_id"] == str(row.pk) and e["kind"] == STEPS_KIND for e in events)
    assert [(e["status"], e["progress"], e["stage"]) for e in events] == [
        ("processing", 0, "starting"),
        ("processing", 25, "step1"),
        ("processing", 50, "step2"),
        ("processing", 75, "step3"),
        ("completed", 100, "done"),
    ], events
    # nothing for another user of the same tenant: a sentinel sent to their group after the last event
    # arrives first (one channel is first in, first out)
    await layer.group_send(user_group(colleague.pk), {"type": "task.progress", "task_id": "sentinel", "status": "x"})
    [first] = await receive_events(layer, colleague_channel, until="x", timeout=30)
    assert first["task_id"] == "sentinel", first


async def test_autoretry_is_visible_in_the_events(worker: CeleryWorker, transactional_db: Any, user: User) -> None:
    layer, channel = await subscribe(user.pk)
    row = await sync_to_async(make_row)(user, kind="test_flaky", celery_task=flaky)

    await sync_to_async(worker.enqueue)(flaky, row, failures=2)
    events = await receive_events(layer, channel, until="completed", timeout=30)

    statuses = [e["status"] for e in events if e["stage"] != "trying"]
    assert statuses == ["processing", "pending", "processing", "pending", "processing", "completed"], events
    assert [e["stage"] for e in events if e["status"] == "pending"] == ["retrying", "retrying"], events
    done = await sync_to_async(reload)(row)
    assert (done.attempts, done.result, done.error) == (3, {"retries": 2}, {})
