"""Where one API request's time goes, measured inside the process (no HTTP client on the same cores).

Drives the ASGI application (the one ``config.asgi`` serves) with in-memory requests, one at a time,
on an event loop of its own, against the embedded PostgreSQL (or ``DATABASE_URL``) with the
benchmark's seed (``benchmarks.api``), and prints for ``GET /api/v1/health/live`` and an
authenticated ``GET /api/v1/documents/?page_size=20``:

* microseconds per request, with and without probes, and a bare ASGI app for scale;
* thread hops per request (asgiref ``sync_to_async``/``async_to_sync`` calls) and threads started;
* a per-phase breakdown: Django's ASGI handler outside the middleware chain (body, ``request_started``,
  sending, ``response.close``), each middleware's own time (a timing probe between each pair; the
  hop into or out of a middleware counts as its time), then inside the view: DRF's authentication,
  permissions, throttles, the handler (query and serialisation), rendering, SQL time and count.

    .venv/bin/python benchmarks/api_profile.py [--requests 400] [--ratelimit on|off]

Run it before and after a change to see what moved; it is a profile, not a throughput benchmark
(``benchmarks/api.py`` is that). The probes add a few microseconds each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks._common import asgi_request  # noqa: E402

LIVE_PATH = "/api/v1/health/live"
LIST_PATH = "/api/v1/documents/?page_size=20"

# --- counters and timers (one request at a time, so plain globals) ------------------------------------------
COUNTS: dict[str, int] = defaultdict(int)
TIMES: dict[str, float] = defaultdict(float)
PROBES: list[tuple[int, str, float, float]] = []  # (probe, "in"/"out", wall, process CPU)


def _count_calls(owner: Any, name: str, label: str, *, is_async: bool) -> None:
    original = getattr(owner, name)
    if is_async:

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            COUNTS[label] += 1
            return await original(self, *args, **kwargs)

    else:

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            COUNTS[label] += 1
            return original(self, *args, **kwargs)

    setattr(owner, name, wrapper)


def _time_method(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - wall
            TIMES[label + " cpu"] += time.process_time() - cpu
            COUNTS[label] += 1

    setattr(owner, name, wrapper)


def install_counters() -> None:
    """Count thread hops, threads started and SQL statements; time DRF's phases and rendering."""
    from asgiref.sync import AsyncToSync, SyncToAsync
    from django.db.backends import utils as db_utils
    from rest_framework import views
    from rest_framework.response import Response

    _count_calls(SyncToAsync, "__call__", "hop sync_to_async", is_async=True)
    _count_calls(AsyncToSync, "__call__", "hop async_to_sync", is_async=False)
    _count_calls(threading.Thread, "start", "threads started", is_async=False)
    _time_method(db_utils.CursorWrapper, "_execute", "sql")
    _time_method(views.APIView, "perform_authentication", "drf authentication")
    _time_method(views.APIView, "check_permissions", "drf permissions")
    _time_method(views.APIView, "check_throttles", "drf throttles")
    _time_method(views.APIView, "finalize_response", "drf finalize_response")
    _time_method(Response, "render", "render")
    _time_method(views.APIView, "dispatch", "drf dispatch")


def _probe(index: int) -> type:
    """A middleware that notes when the request passes it, in whichever mode its neighbours run."""
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction

    class Probe:
        sync_capable = True
        async_capable = True

        def __init__(self, get_response: Callable[..., Any]) -> None:
            self.get_response = get_response
            self.is_async = iscoroutinefunction(get_response)
            if self.is_async:
                markcoroutinefunction(self)

        def __call__(self, request: Any) -> Any:
            if self.is_async:
                return self._acall(request)
            PROBES.append((index, "in", time.perf_counter(), time.process_time()))
            try:
                return self.get_response(request)
            finally:
                PROBES.append((index, "out", time.perf_counter(), time.process_time()))

        async def _acall(self, request: Any) -> Any:
            PROBES.append((index, "in", time.perf_counter(), time.process_time()))
            try:
                return await self.get_response(request)
            finally:
                PROBES.append((index, "out", time.perf_counter(), time.process_time()))

    Probe.__name__ = Probe.__qualname__ = f"Probe{index}"
    return Probe


def __getattr__(name: str) -> Any:  # "benchmarks.api_profile.Probe3" in MIDDLEWARE
    if name.startswith("Probe") and name[5:].isdigit():
        probe = _probe(int(name[5:]))
        globals()[name] = probe
        return probe
    raise AttributeError(name)


def django_handler(*, probes: bool, middleware: list[str] | None = None) -> tuple[Any, list[str]]:
    """A fresh handler of the class ``config.asgi`` serves, over ``MIDDLEWARE`` (or ``middleware``),
    with ``probes`` a probe before each middleware and one before the view."""
    from django.conf import settings

    from config.asgi import django_asgi_app

    original = settings.MIDDLEWARE
    middleware = list(original if middleware is None else middleware)
    settings.MIDDLEWARE = middleware
    if probes:
        probed: list[str] = []
        for i, path in enumerate(middleware):
            probed += [f"{__name__}.Probe{i}", path]
        probed.append(f"{__name__}.Probe{len(middleware)}")
        settings.MIDDLEWARE = probed
    try:
        return type(django_asgi_app)(), middleware
    finally:
        settings.MIDDLEWARE = original


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    from benchmarks.api import bare_live

    await bare_live(scope, receive, send)


async def one_request(app: Any, path: str, headers: dict[str, str]) -> tuple[int, float, float]:
    """Send one GET through ``app``; its status, wall seconds and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    status, _ = await asgi_request(app, "GET", path, headers=headers)
    return status, time.perf_counter() - wall, time.process_time() - cpu


def _phases(middleware: list[str], total: float, clock: int) -> dict[str, float]:
    """Seconds per phase of one request from the probe marks (``clock`` 2: wall, 3: process CPU)."""
    inclusive: dict[int, float] = {}
    entered: dict[int, float] = {}
    for mark in PROBES:
        index, kind, at = mark[0], mark[1], mark[clock]
        if kind == "in":
            entered[index] = at
        else:
            inclusive[index] = at - entered[index]
    phases = {"asgi handler (outside the chain)": total - inclusive.get(0, 0.0)}
    for i, path in enumerate(middleware):
        if i in inclusive:
            phases[path] = inclusive[i] - inclusive.get(i + 1, 0.0)
    phases["view (resolve, process_view, view, render)"] = inclusive.get(len(middleware), 0.0)
    return phases


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Log lines are still made and formatted (their cost is part of the profile), then dropped."""
    import logging

    with Path(os.devnull).open("w") as devnull:
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        streams = [h.setStream(devnull) for h in handlers]
        try:
            yield
        finally:
            for h, s in zip(handlers, streams, strict=True):
                h.setStream(s)


def profile(path: str, headers: dict[str, str], requests: int) -> dict[str, Any]:
    """Clean timings, hop counts and the per-phase breakdown of ``requests`` requests to ``path``."""
    plain, middleware = django_handler(probes=False)
    probed, _ = django_handler(probes=True)

    async def run() -> dict[str, Any]:
        for _ in range(50):  # warm up both
            await one_request(plain, path, headers)
            await one_request(probed, path, headers)
            await one_request(bare_app, path, headers)
        bare = [(await one_request(bare_app, path, headers))[1] for _ in range(requests)]
        clean: list[float] = []
        cpu = 0.0
        for _ in range(requests):
            status, seconds, cpu_seconds = await one_request(plain, path, headers)
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
            clean.append(seconds)
            cpu += cpu_seconds
        COUNTS.clear()
        TIMES.clear()
        wall_phases: dict[str, float] = defaultdict(float)
        cpu_phases: dict[str, float] = defaultdict(float)
        for _ in range(requests):
            PROBES.clear()
            _, seconds, cpu_seconds = await one_request(probed, path, headers)
            for name, value in _phases(middleware, seconds, 2).items():
                wall_phases[name] += value
            for name, value in _phases(middleware, cpu_seconds, 3).items():
                cpu_phases[name] += value
        return {
            "bare_us": statistics.median(bare) * 1e6,
            "clean_us": statistics.median(clean) * 1e6,
            "cpu_us": cpu / requests * 1e6,
            "counts": {k: v / requests for k, v in COUNTS.items()},
            "times_us": {k: v / requests * 1e6 for k, v in TIMES.items()},
            "wall_phases_us": {k: v / requests * 1e6 for k, v in wall_phases.items()},
            "cpu_phases_us": {k: v / requests * 1e6 for k, v in cpu_phases.items()},
        }

    with _quiet_logs():
        return asyncio.run(run())


def floor(path: str, requests: int) -> float:
    """CPU microseconds per request of ``path`` through the same handler with no middleware at all."""
    handler, _ = django_handler(probes=False, middleware=[])

    async def run() -> float:
        for _ in range(50):
            await one_request(handler, path, {})
        cpu = 0.0
        for _ in range(requests):
            status, _, cpu_seconds = await one_request(handler, path, {})
            if status != 200:
                raise RuntimeError(f"{path}: {status}")
            cpu += cpu_seconds
        return cpu / requests * 1e6

    with _quiet_logs():
        return asyncio.run(run())


def hop_cost(requests: int) -> float:
    """Microseconds of one thread-sensitive ``sync_to_async`` round trip inside a request's context."""
    from asgiref.sync import SyncToAsync, ThreadSensitiveContext

    call = SyncToAsync.__call__

    async def run() -> float:
        samples = []
        for _ in range(requests):
            async with ThreadSensitiveContext():
                started = time.perf_counter()
                for _ in range(4):
                    await call(SyncToAsync(int), "1")
                samples.append((time.perf_counter() - started) / 4)
        return statistics.median(samples) * 1e6

    return asyncio.run(run())


def report(name: str, result: dict[str, Any]) -> None:
    print(f"{name}")
    print(
        f"  per request: DocuMind wall p50 {result['clean_us']:6.0f} us, CPU {result['cpu_us']:6.0f} us (this process,"
        f" all threads); a bare ASGI app {result['bare_us']:3.0f} us (in-process, no server, one at a time)"
    )
    counts = result["counts"]
    print(
        "  thread hops per request: "
        f"sync_to_async {counts.get('hop sync_to_async', 0):.1f}, async_to_sync {counts.get('hop async_to_sync', 0):.1f};"
        f" threads started {counts.get('threads started', 0):.1f}; SQL statements {counts.get('sql', 0):.1f}"
    )
    wall, cpu = result["wall_phases_us"], result["cpu_phases_us"]
    print(f"  phases with probes (CPU {sum(cpu.values()):.0f} us, wall {sum(wall.values()):.0f} us in all), own time:")
    print("      CPU us   wall us")
    for phase in wall:
        if abs(wall[phase]) >= 5 or abs(cpu[phase]) >= 5:
            print(f"    {cpu[phase]:8.0f}  {wall[phase]:8.0f}  {phase}")
    times = result["times_us"]
    print("  inside the view (inclusive):")
    for label in (
        "drf dispatch",
        "drf authentication",
        "drf permissions",
        "drf throttles",
        "drf finalize_response",
        "render",
        "sql",
    ):
        if label in times:
            print(f"    {times[label + ' cpu']:8.0f}  {times[label]:8.0f}  {label}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--ratelimit", choices=["on", "off"], default="on")
    args = parser.parse_args(argv)

    from benchmarks._common import embedded_database, server_env
    from benchmarks.api import seed

    # The rate limit on (as installed) with a limit the profile never reaches: its counter is measured.
    env = server_env(
        RATELIMIT_ENABLED="true" if args.ratelimit == "on" else "false",
        RATELIMIT_PER_MINUTE="100000000",
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "INFO"),
    )
    with embedded_database(env, "documind_bench_api"):
        headers = seed(env)
        install_counters()
        from django.conf import settings

        print(
            f"api_profile: {args.requests} requests each; rate limit {args.ratelimit}"
            f" (cache {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}),"
            f" log level {settings.LOG_LEVEL}, pool {'on' if 'pool' in settings.DATABASES['default'].get('OPTIONS', {}) else 'off'};"
            f" load average {os.getloadavg()[0]:.2f}"
        )
        print(f"one sync_to_async round trip: {hop_cost(200):.0f} us")
        report(f"GET {LIVE_PATH}", profile(LIVE_PATH, {}, args.requests))
        print(
            f"  the floor: the same handler and view with no middleware at all: CPU {floor(LIVE_PATH, args.requests):.0f} us"
        )
        report(f"GET {LIST_PATH} (authenticated)", profile(LIST_PATH, headers, args.requests))
    return 0


if __name__ == "__main__":
    from benchmarks.api_profile import main as _main  # one module instance: the probes live in it

    sys.exit(_main())
