"""The sandbox's limits, on a child that misbehaves on request (``documents.pdf_child selftest``).

Each limit must end the child (never this process) with the right reason, quickly; a child whose
parent dies must die too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from documents.sandbox import Child, ChildFailed, Limits

LIMITS = Limits(memory_mb=256, cpu_seconds=3, item_seconds=5, total_seconds=20)


def run(config: dict, limits: Limits = LIMITS) -> tuple[Child, list[dict], float]:
    """Drive a selftest child until it ends; returns it, its messages and the seconds it took."""
    started = time.monotonic()
    child = Child("selftest", config, limits)
    messages: list[dict] = []
    try:
        while not child.finished:
            messages += child.receive(0.2)
    finally:
        child.close()
    return child, messages, time.monotonic() - started


def test_a_well_behaved_child_says_done_and_reports_its_peak() -> None:
    child, messages, _ = run({})
    assert [m["t"] for m in messages] == ["open", "done"]
    assert child.stats.returncode == 0
    # Its own peak (VmHWM after exec), not the forked parent's: this test process is far larger.
    assert 0 < child.stats.peak_rss_kb < 100 * 1024


def test_the_peak_of_a_child_that_allocates_is_seen() -> None:
    child, messages, _ = run({"allocate_mb": 100})
    assert messages[-1]["t"] == "done"
    assert 100 * 1024 < child.stats.peak_rss_kb < 256 * 1024


def test_memory_beyond_the_address_space_limit_fails_in_the_child() -> None:
    child, messages, seconds = run({"allocate_mb": 400})
    assert messages[-1]["t"] == "too_complex" and messages[-1]["reason"] == "memory"
    assert child.stats.peak_rss_kb < 256 * 1024
    assert seconds < 10


def test_cpu_limit_kills_a_spinning_child() -> None:
    child, messages, seconds = run({"spin_seconds": 30}, Limits(256, 1, 60, 60))
    assert [m["t"] for m in messages] == ["open"]
    assert child.crashed() and child.death_reason() == "cpu"
    assert seconds < 10


def test_the_childs_own_watchdog_names_the_page_that_took_too_long() -> None:
    _, messages, seconds = run({"sleep_seconds": 30, "page_seconds": 1})
    assert messages[-1].pop("hwm") > 0  # every message carries the child's peak RSS
    assert messages[-1] == {"t": "too_complex", "page": 1, "reason": "time", "message": "page 1 took more than 1 s"}
    assert seconds < 5


def test_the_parent_kills_a_child_that_stays_silent_too_long() -> None:
    with pytest.raises(ChildFailed) as failed:
        run({"sleep_seconds": 30}, Limits(256, 60, item_seconds=1, total_seconds=30))
    assert failed.value.reason == "time"


def test_the_run_limit_kills_a_child_that_answers_each_page_in_time_but_takes_too_long_in_all() -> None:
    """Every page well within the per-page limit (which resets with each message), the run longer than
    ``total_seconds`` (``EXTRACT_TIMEOUT_SECONDS``): the parent kills the child at the run limit."""
    limits = Limits(256, 60, item_seconds=10, total_seconds=2)
    child = Child("selftest", {"pages": 40, "page_sleep_seconds": 0.25}, limits)
    messages: list[dict] = []
    try:
        with pytest.raises(ChildFailed) as failed:
            while not child.finished:
                messages += child.receive(0.2)
        seconds = time.monotonic() - child.started
    finally:
        child.close()
    assert (failed.value.reason, failed.value.message) == ("time", "took more than 2 s in all")
    pages = [m["n"] for m in messages if m["t"] == "page"]
    assert 3 <= len(pages) < 40 and "done" not in [m["t"] for m in messages]  # pages came; the run was cut
    assert 2 <= seconds < 3.5
    pid = messages[0]["pid"]
    assert child.stats.returncode == -signal.SIGKILL  # killed and reaped by the parent
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_crash_is_reported_as_such() -> None:
    child, _, _ = run({"crash": True})
    assert child.crashed() and child.stats.returncode == -signal.SIGABRT


def test_closing_kills_a_running_child_at_once() -> None:
    child = Child("selftest", {"sleep_seconds": 60}, LIMITS)
    pid = child.receive(5)[0]["pid"]
    started = time.monotonic()
    child.close()
    assert time.monotonic() - started < 1
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_child_dies_with_its_parent(tmp_path: pytest.TempPathFactory) -> None:
    """SIGKILL the process that started the child: the kernel (PR_SET_PDEATHSIG) kills the child too."""
    script = textwrap.dedent(
        """
        import sys
        from documents.sandbox import Child, Limits
        child = Child("selftest", {"sleep_seconds": 120}, Limits(256, 60, 300, 300))
        print(child.receive(10)[0]["pid"], flush=True)
        import time; time.sleep(120)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path.cwd(),
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert psutil.pid_exists(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child outlived its parent")
    finally:
        parent.kill()
        parent.wait()


def test_a_worker_under_a_lower_cpu_hard_limit_still_starts_children() -> None:
    """A hard RLIMIT_CPU below the child's (``ulimit -t``, systemd, mutmut) caps it instead of failing."""
    script = textwrap.dedent(
        """
        import resource
        from documents.sandbox import Child, Limits
        resource.setrlimit(resource.RLIMIT_CPU, (100, 100))
        child = Child("selftest", {}, Limits(256, 300, 5, 20))
        messages = []
        while not child.finished:
            messages += child.receive(0.2)
        child.close()
        print(",".join(m["t"] for m in messages), child.stats.returncode)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    assert done.stdout.strip() == "open,done 0", done.stderr[-2000:]


def test_the_child_starts_without_django_or_celery() -> None:
    """Every document pays the child's start-up: what it imports stays light (Celery and Django's
    settings once cost it ~75 ms, half its start-up)."""
    script = (
        "import json, sys, documents.pdf_child, documents.extraction, pypdfium2; print(json.dumps(list(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path.cwd(), capture_output=True, text=True, timeout=60, check=True
    )
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert not loaded & {"django", "celery", "billiard", "kombu", "pypdf"}
