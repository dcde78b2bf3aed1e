"""API overhead: ``GET /api/v1/health/live`` against a bare ASGI app, both served by one server.

One daphne process serves :data:`application`: ``/bare/live`` is a minimal ASGI app answering the
same JSON, everything else is DocuMind (``config.asgi``: every middleware, DRF, structured logs at
``LOG_LEVEL``, the rate limiter on with a limit the benchmark never reaches, so its counter is paid
for). A keep-alive HTTP/1.1 client with ``--connections`` concurrent connections sends
``--requests`` requests to each, in one run, and prints requests/s, p50 and p95 and their ratios;
then one client lists 20 documents of a tenant (authenticated) with the general limit counted in the
shared cache (the default) and in the process (``RATELIMIT_API_COUNTER=process``). Each goal of
issue 16 is printed beside its figure.

When uvicorn can be imported (it is not a dependency: ``pip install --target DIR uvicorn httptools``
and ``PYTHONPATH=DIR``), the same bare and live pair is measured under uvicorn too.

    .venv/bin/python benchmarks/api.py [--requests 3000] [--connections 8]

The machine has 2 cores and the client shares them with the server: the figures compare the two
paths; they are not the server's capacity. ``benchmarks/api_profile.py`` says where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks._common import embedded_database, percentile, serve, server_env  # noqa: E402

BARE_PATH = "/bare/live"
DJANGO_PATH = "/api/v1/health/live"
LIST_PATH = "/api/v1/documents/?page_size=20"
_STARTED = time.monotonic()


async def bare_live(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same answer as the liveness view, with nothing in between."""
    body = json.dumps({"status": "ok", "uptime_seconds": round(time.monotonic() - _STARTED, 3)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _django_app() -> Any:
    from config.asgi import application as django_application

    return django_application


_django: Any = None


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What the benchmark's daphne serves (``benchmarks.api:application``)."""
    global _django
    if scope["type"] == "http" and scope["path"] == BARE_PATH:
        await bare_live(scope, receive, send)
        return
    if _django is None:
        _django = _django_app()
    await _django(scope, receive, send)


async def _connection(
    host: str, port: int, path: str, count: int, latencies: list[float], headers: dict[str, str] | None = None
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n{extra}\r\n".encode()
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            if b" 200 " not in status_line:
                raise RuntimeError(f"{path}: {status_line!r}")
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def measure(
    host: str, port: int, path: str, requests: int, connections: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    latencies: list[float] = []
    per_connection = requests // connections
    started = time.perf_counter()
    await asyncio.gather(
        *(_connection(host, port, path, per_connection, latencies, headers) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
    }


def seed(env: dict[str, str]) -> dict[str, str]:
    """A tenant with one member and 40 ready documents; the headers of an authenticated request."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.authentication import tokens_for_user
    from accounts.models import User
    from documents.models import Document
    from tenants.models import Tenant

    Tenant.objects.filter(slug="bench-api").delete()
    tenant = Tenant.objects.create(slug="bench-api", name="API benchmark")
    user = User.objects.create(tenant=tenant, email="bench@api.test", role=User.Role.MEMBER)
    Document.objects.bulk_create(
        Document(
            tenant=tenant, owner=user, title=f"Doc {i}", file=f"bench/{i}.pdf", sha256=f"{i:064x}",
            status=Document.Status.READY, page_count=3,
        )
        for i in range(40)
    )  # fmt: skip
    return {"X-Tenant-ID": tenant.slug, "Authorization": f"Bearer {tokens_for_user(user)['access']}"}


def live_pair(port: int, requests: int, connections: int) -> tuple[dict[str, float], dict[str, float]]:
    """Warm up, then measure the bare app and DocuMind's live endpoint on one server."""
    warmup = max(200, connections * 20)
    for path in (BARE_PATH, DJANGO_PATH):
        asyncio.run(measure("127.0.0.1", port, path, warmup, connections))
    bare = asyncio.run(measure("127.0.0.1", port, BARE_PATH, requests, connections))
    django = asyncio.run(measure("127.0.0.1", port, DJANGO_PATH, requests, connections))
    return bare, django


def listing(port: int, requests: int, headers: dict[str, str]) -> dict[str, float]:
    """One client at a time: the latency of one authenticated, tenant-scoped list."""
    asyncio.run(measure("127.0.0.1", port, LIST_PATH, 100, 1, headers))
    return asyncio.run(measure("127.0.0.1", port, LIST_PATH, requests, 1, headers))


def _print_pair(server: str, bare: dict[str, float], django: dict[str, float]) -> float:
    for name, result in (("bare ASGI", bare), ("DocuMind", django)):
        print(
            f"  {server:<7} {name:<10} {result['rps']:8.0f} req/s   p50 {result['p50_ms']:6.2f} ms"
            f"   p95 {result['p95_ms']:6.2f} ms"
        )
    ratio = django["rps"] / bare["rps"]
    print(
        f"  {server:<7} ratio      {ratio:8.2f} of the bare throughput;"
        f" p50 x{django['p50_ms'] / bare['p50_ms']:.1f}, p95 x{django['p95_ms'] / bare['p95_ms']:.1f}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--list-requests", type=int, default=500)
    args = parser.parse_args(argv)

    # The rate limiter on, as installed, with a limit no run reaches: its counter is part of the cost.
    env = server_env(RATELIMIT_ENABLED="true", RATELIMIT_PER_MINUTE="1000000000")
    load_before = os.getloadavg()[0]
    with embedded_database(env, "documind_bench_api"):
        headers = seed(env)
        with serve("benchmarks.api:application", env) as port:
            bare, django = live_pair(port, args.requests, args.connections)
            shared = listing(port, args.list_requests, headers)
        with serve("benchmarks.api:application", {**env, "RATELIMIT_API_COUNTER": "process"}) as port:
            in_process = listing(port, args.list_requests, headers)
        under_uvicorn = None
        if importlib.util.find_spec("uvicorn") is not None:
            with serve("benchmarks.api:application", env, server="uvicorn") as port:
                under_uvicorn = live_pair(port, args.requests, args.connections)

    print(
        f"api: GET {DJANGO_PATH} vs a bare ASGI app on the same server ({args.requests} requests,"
        f" {args.connections} connections); load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    ratio = _print_pair("daphne", bare, django)
    print(f"  goal       live >= 0.50 of bare (daphne): {ratio:.2f} {'met' if ratio >= 0.5 else 'NOT met'}")
    if under_uvicorn is not None:
        uv_ratio = _print_pair("uvicorn", *under_uvicorn)
        print(
            f"  uvicorn/daphne: bare x{under_uvicorn[0]['rps'] / bare['rps']:.2f},"
            f" DocuMind x{under_uvicorn[1]['rps'] / django['rps']:.2f} (uvicorn ratio {uv_ratio:.2f})"
        )
    else:
        print("  uvicorn    not installed: not compared")
    for name, result in (("shared counter", shared), ("process counter", in_process)):
        print(
            f"  GET {LIST_PATH} (authenticated, 1 connection, {name}): p50 {result['p50_ms']:.2f} ms,"
            f" p95 {result['p95_ms']:.2f} ms; goal p50 <= 10 ms: {'met' if result['p50_ms'] <= 10 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
