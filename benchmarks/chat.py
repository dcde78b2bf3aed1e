"""Chat: the time to first token the backend adds, and 500 sockets streaming from one daphne.

One daphne process serves :data:`application` (DocuMind's ``config.asgi`` plus an event-loop lag probe
at ``/bench/loop-lag``); the chat provider is ``openai`` pointed at the fake OpenAI-compatible server of
the test suite (``tests/fake_openai.py``, real HTTP and SSE) in a process of its own; retrieval is the
real hybrid search over a seeded document (hashing embeddings). Each configuration runs in a process
of its own: the embedded default (PostgreSQL channel layer, database cache), then Redis
(``channels-redis`` and the Redis cache, in database 14 of ``--redis-url``, emptied first) when a
Redis answers there.

1. **Added time to first token**: ``--questions`` questions one after another on one socket (each a new
   session: validation, retrieval, prompt, quota reservation, the inserts, the model call), from
   sending ``chat.message`` to the first ``chat.token``; against the same fake model asked directly
   with the ``openai`` client from this process. The difference is what the backend adds.
2. **Sockets**: ``--sockets`` sockets connect and stay open; ``--simultaneous`` of them ask at once,
   then all of them do; the fake streams ``--words`` words ``--token-delay-ms`` apart. Success =
   ``chat.end`` completed, its content equal to the streamed tokens, with a citation. Each round
   reports p50/p95 time to first token and the daphne event loop's lag (a 10 ms sleep's overshoot,
   sampled in the server during the round); the readiness endpoint is polled throughout.

Then each goal of issue 16 is printed beside its figure.

Beside the times, daphne's own CPU (read in the server at ``/bench/cpu``: its event loop's thread, the
chat database threads, the whole process) per question of each part, and per streamed token (a quarter
of ``--questions`` answers ``LONG_WORDS`` words longer, by difference): figures that depend much less on
the machine's load than the times do. ``--profile PREFIX`` writes cProfile statistics of the one-socket
questions (``PREFIX.loop.pstats``: the event loop's thread; ``PREFIX.db.pstats``: the work of the chat
database threads); ``BENCH_SLOW_CALLBACK_MS=10 BENCH_SLOW_CALLBACK_LOG=path`` runs daphne's loop in
asyncio debug mode and logs every callback slower than that.

    .venv/bin/python benchmarks/chat.py [--questions 200] [--sockets 500] [--simultaneous 200]
        [--words 40] [--token-delay-ms 20] [--layer both|embedded|redis] [--redis-url URL] [--profile PREFIX]

Two cores are shared by daphne, PostgreSQL, the fake model and the client: read the figures as
relative, not as capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from benchmarks._common import embedded_database, percentile, serve, server_env  # noqa: E402

DB_NAME = "documind_bench_chat"
LAG_PATH = "/bench/loop-lag"
LAG_INTERVAL = 0.01

# --- the daphne side: DocuMind plus a loop-lag probe -----------------------------------------

CPU_PATH = "/bench/cpu"
PROFILE_PATH = "/bench/profile"

_lags: list[float] = []
_monitor: asyncio.Task[None] | None = None
_django: Any = None
_profiles: dict[str, Any] = {}  # thread name -> cProfile.Profile while ``PROFILE_PATH`` is on


async def _watch_loop() -> None:
    loop = asyncio.get_running_loop()
    if os.environ.get("BENCH_SLOW_CALLBACK_MS"):  # asyncio debug mode: log each callback slower than this
        import logging

        handler = logging.FileHandler(os.environ["BENCH_SLOW_CALLBACK_LOG"])
        logging.getLogger("asyncio").addHandler(handler)
        logging.getLogger("asyncio").setLevel(logging.WARNING)
        loop.set_debug(True)
        loop.slow_callback_duration = float(os.environ["BENCH_SLOW_CALLBACK_MS"]) / 1000
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_INTERVAL)
        _lags.append(max(0.0, loop.time() - started - LAG_INTERVAL))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """What the benchmark's daphne serves (``benchmarks.chat:application``)."""
    global _monitor, _django
    if _monitor is None:
        _monitor = asyncio.get_running_loop().create_task(_watch_loop())
    if scope["type"] == "http" and scope["path"] == LAG_PATH:
        samples = sorted(_lags)
        _lags.clear()
        body = json.dumps(_summary(samples)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    if scope["type"] == "http" and scope["path"] in (CPU_PATH, PROFILE_PATH):
        if scope["path"] == CPU_PATH:
            body = json.dumps(_cpu_seconds()).encode()
        else:
            body = json.dumps(_toggle_profile(scope["query_string"].decode())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    if _django is None:
        from config.asgi import application as django_application

        _django = django_application
    await _django(scope, receive, send)


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds so far (call it on the event loop): the loop's thread, the chat database threads, the process."""
    threads = [t for t in threading.enumerate() if t.name.startswith("chat-db") and t.ident is not None]
    return {
        "loop": time.thread_time(),
        "db_threads": sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in threads),  # type: ignore[arg-type]
        "process": time.process_time(),
    }


def _toggle_profile(query: str) -> dict[str, Any]:
    """``?on``: profile the event loop's thread and the work of the chat database threads (cProfile);
    ``?off=<path prefix>``: stop and write ``<prefix>.loop.pstats`` and ``<prefix>.db.pstats``."""
    import cProfile

    from chat import db

    if query == "on":
        _profiles.clear()
        _profiles["loop"] = cProfile.Profile()
        _profiles["loop"].enable()
        plain = db.__dict__.setdefault("_bench_plain_call", db._call)

        def profiled(fn: Any, kwargs: dict[str, Any]) -> Any:
            profile = _profiles.get(threading.current_thread().name)
            if profile is None:
                profile = _profiles.setdefault(threading.current_thread().name, cProfile.Profile())
            profile.enable()
            try:
                return plain(fn, kwargs)
            finally:
                profile.disable()

        db._call = profiled
        return {"profiling": True}
    prefix = query.removeprefix("off=")
    from urllib.parse import unquote

    prefix = unquote(prefix)
    db._call = db.__dict__.get("_bench_plain_call", db._call)
    loop_profile = _profiles.pop("loop")
    loop_profile.disable()
    loop_profile.dump_stats(f"{prefix}.loop.pstats")
    if _profiles:
        import pstats

        merged = pstats.Stats(*_profiles.values())
        merged.dump_stats(f"{prefix}.db.pstats")
    _profiles.clear()
    return {"profiling": False}


def _summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    return {
        "count": len(samples),
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p95_ms": percentile(samples, 0.95) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000,
    }


# --- the client side -------------------------------------------------------------------------


def seed(users: int) -> tuple[Any, list[str]]:
    """A tenant with ``users`` members (access tokens) and one ready document (real chunker/embedder/store)."""
    from django.db import transaction

    from accounts.models import User
    from accounts.tokens import tokens_for_user
    from documents.models import Document
    from tenants.models import Tenant
    from tests.ready_documents import store_page_chunks

    Tenant.objects.filter(slug="bench-chat").delete()
    tenant = Tenant.objects.create(
        slug="bench-chat",
        name="Chat benchmark",
        settings={"daily_token_quota": 10**12, "user_daily_token_quota": 10**12},  # finite: the quota path is measured
    )
    members = User.objects.bulk_create(
        [User(tenant=tenant, email=f"bench{i}@bench.test", role=User.Role.MEMBER) for i in range(users)]
    )
    pages = [
        "Vacation policy. Every employee receives twenty-five days of paid vacation per year. " * 3,
        "Security policy. Laptops must use full disk encryption and lost devices are reported at once. " * 3,
        "Travel policy. Book trains for trips under four hours and flights otherwise. " * 3,
    ]
    with transaction.atomic():
        document = Document.objects.create(
            tenant=tenant,
            owner=members[0],
            title="Handbook",
            file="bench/handbook.pdf",
            sha256="0" * 64,
            status=Document.Status.READY,
            page_count=len(pages),
        )
        store_page_chunks(document, pages, chunk_tokens=400)
    tokens = []
    for member in members:
        # A real sign-in's pair: the access token carries the claims the server checks (tenant, role,
        # token version, sign-in family), which a bare AccessToken lacks.
        tokens.append(tokens_for_user(member)["access"])
    return tenant, tokens


async def direct_ttft(base_url: str, questions: int) -> list[float]:
    """The fake model's own time to first token, asked with the openai client (the baseline)."""
    import openai

    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base_url, max_retries=0)
    messages = [{"role": "system", "content": "Sources: [1] Handbook ..."}, {"role": "user", "content": "vacation?"}]
    times = []
    for _ in range(questions):
        started = time.perf_counter()
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )
        first = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        times.append(first or 0.0)
    await client.close()
    return times


async def ask(ws: Any, question: str) -> dict[str, Any]:
    """Send one question; return its time to first token, the end event and the streamed text."""
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "chat.message", "content": question}))
    first, text, end = None, [], None
    while end is None:
        event = json.loads(await ws.recv())
        if event["type"] == "chat.token":
            if first is None:
                first = time.perf_counter() - started
            text.append(event["delta"])
        elif event["type"] == "chat.end":
            end = event
        elif event["type"] == "error":
            return {"ok": False, "error": event["error"]["type"], "ttft": first}
    ok = end["status"] == "completed" and "".join(text) == end["content"] and bool(end["citations"])
    return {
        "ok": ok,
        "ttft": first,
        "server_ttft_ms": end.get("ttft_ms"),
        "total": time.perf_counter() - started,
        "frames": len(text),
    }


async def sequential(ws_url: str, origin: str, questions: int) -> list[dict[str, Any]]:
    from websockets.asyncio.client import connect

    results = []
    async with connect(ws_url, origin=origin, max_size=None) as ws:  # type: ignore[arg-type]
        for i in range(questions):
            results.append(await ask(ws, f"How many vacation days do employees get? ({i})"))
    return results


async def open_sockets(ws_base: str, origin: str, tokens: list[str]) -> list[Any]:
    """One open socket per token (connected a few dozen at a time); the ones that failed are left out."""
    from websockets.asyncio.client import connect

    gate = asyncio.Semaphore(50)

    async def one(token: str) -> Any:
        async with gate:
            try:
                return await connect(f"{ws_base}?token={token}", origin=origin, open_timeout=60, max_size=None)  # type: ignore[arg-type]
            except Exception:
                return None

    return [ws for ws in await asyncio.gather(*(one(token) for token in tokens)) if ws is not None]


async def ask_at_once(sockets: list[Any], question: str) -> tuple[list[dict[str, Any]], float]:
    """Every socket of ``sockets`` asks ``question`` at the same moment; their results and the time to the last end."""

    async def one(ws: Any) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(ask(ws, question), timeout=180)
        except Exception as exc:
            return {"ok": False, "error": type(exc).__name__, "ttft": None}

    started = time.perf_counter()
    results = await asyncio.gather(*(one(ws) for ws in sockets))
    return list(results), time.perf_counter() - started


async def crowd(
    ws_base: str, origin: str, tokens: list[str], simultaneous: int, lag: Any
) -> tuple[int, list[tuple[str, list[dict[str, Any]], float, dict[str, float]]]]:
    """Hold ``len(tokens)`` sockets open; ``simultaneous`` of them ask at once, then all of them do.

    Returns how many connected and, per round, (name, results, seconds, the server's loop lag)."""
    sockets = await open_sockets(ws_base, origin, tokens)
    rounds = []
    try:
        plan = [(f"{simultaneous} simultaneous questions", sockets[:simultaneous])] if simultaneous else []
        plan.append((f"{len(tokens)} sockets, all asking at once", sockets))
        for name, askers in plan:
            before = await asyncio.to_thread(lag)  # resets the server's lag samples
            results, seconds = await ask_at_once(askers, "Do laptops need disk encryption?")
            after = await asyncio.to_thread(lag)
            cpu = {key: after[key] - before[key] for key in after if key.startswith("cpu_")}
            rounds.append((name, results, seconds, {**after, **cpu}))
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return len(sockets), rounds


def configure_fake(base_url: str, **config: Any) -> None:
    import httpx

    httpx.post(base_url.removesuffix("/v1") + "/_fake/config", json=config, timeout=10).raise_for_status()


def http_get_json(port: int, path: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30).json()


def poll_readiness(
    port: int, stop: threading.Event, answers: list[tuple[int, float, str]], layer_ms: list[float]
) -> None:
    """GET the readiness endpoint every half second until ``stop``: (status, seconds, body when not 200)
    of each answer, and the channel-layer check's own latency of each answer that has one. A load
    balancer does this; under load it must keep answering 200 (issue 12: it used to flap)."""
    import httpx

    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health/ready", timeout=10)
            status, body = response.status_code, "" if response.status_code == 200 else response.text
            with contextlib.suppress(ValueError, KeyError, TypeError):
                layer_ms.append(float(response.json()["checks"]["channel_layer"]["latency_ms"]))
        except httpx.HTTPError as exc:
            status, body = 0, repr(exc)
        answers.append((status, time.perf_counter() - started, body))
        stop.wait(0.5)


def _goal(text: str, met: bool, figure: str) -> str:
    return f"  {'met    ' if met else 'NOT met'}  {text:<58} {figure}"


def _layer_url(args: argparse.Namespace) -> str | None:
    """Redis's URL when this run uses it (``--layer redis``), None for the embedded default."""
    return args.redis_url if args.layer == "redis" else None


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except Exception:
        return False


def run(args: argparse.Namespace) -> int:
    """One configuration (the embedded default or Redis): measure and print the figures and the goals."""
    env = server_env(LOG_LEVEL="WARNING")
    redis_url = _layer_url(args)
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()  # a database of its own (``--redis-url``): start clean
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    layer = (
        f"Redis ({redis_url}): channels-redis layer, Redis cache"
        if redis_url
        else "embedded default: PostgreSQL channel layer, database cache"
    )
    with embedded_database(env, DB_NAME):
        # The fake model runs in a process of its own: its threads must not share a GIL with the client.
        fake = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_openai", "--port", "0"],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            fake_url = fake.stdout.readline().split()[1]  # type: ignore[union-attr]
            env.update(
                CHAT_PROVIDER="openai",
                OPENAI_API_KEY="sk-bench",
                OPENAI_BASE_URL=fake_url,
                OPENAI_MAX_RETRIES="0",
                EMBEDDING_PROVIDER="hashing",
                RATELIMIT_ENABLED="false",
                CHAT_SOCKET_MESSAGES_PER_MINUTE="1000000",
            )
            os.environ.update(env)
            import django

            django.setup()
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
            # Both configurations share this database, and the migration that makes the database cache's
            # table makes it only for the cache configured then: after a first run over Redis, the
            # embedded one would find no table (its readiness 503, "cache": ProgrammingError).
            call_command("createcachetable", verbosity=0)
            _, tokens = seed(max(1, args.sockets))
            words = " ".join(f"word{i}" for i in range(args.words))
            configure_fake(fake_url, reply=f"Employees get twenty-five days of vacation [1]. {words}", token_delay=0)

            # Ours answers the lag probe (another process on this busy machine may have taken the port),
            # and Django is loaded: on a busy machine its first import can outlast daphne's 5 s handshake
            # timeout, which would refuse the first socket with a 403.
            def answers_lag_probe(port: int) -> bool:
                return "p95_ms" in http_get_json(port, LAG_PATH) and "uptime_seconds" in http_get_json(
                    port, "/api/v1/health/live"
                )

            with serve("benchmarks.chat:application", env, ready=answers_lag_probe) as port:
                origin = f"http://127.0.0.1:{port}"
                ws_base = f"ws://127.0.0.1:{port}/ws/chat/"

                # 1. added time to first token (no token delay: the fake answers at once)
                asyncio.run(sequential(f"{ws_base}?token={tokens[0]}", origin, 10))  # warm-up
                asyncio.run(direct_ttft(fake_url, 10))
                direct = asyncio.run(direct_ttft(fake_url, args.questions))
                if args.profile:
                    http_get_json(port, f"{PROFILE_PATH}?on")
                cpu_before = http_get_json(port, CPU_PATH)
                socket_results = asyncio.run(sequential(f"{ws_base}?token={tokens[0]}", origin, args.questions))
                cpu = _cpu_delta(cpu_before, http_get_json(port, CPU_PATH))
                if args.profile:
                    http_get_json(port, f"{PROFILE_PATH}?off={quote(str(Path(args.profile).resolve()))}")
                cpu_long = cpu_of_long_answers(port, fake_url, f"{ws_base}?token={tokens[0]}", origin, args)

                # 2. many sockets
                configure_fake(
                    fake_url,
                    reply=f"Employees get twenty-five days of vacation [1]. {words}",
                    token_delay=args.token_delay_ms / 1000,
                )
                readiness: list[tuple[int, float, str]] = []
                layer_ms: list[float] = []
                stop_polling = threading.Event()
                poller = threading.Thread(
                    target=poll_readiness, args=(port, stop_polling, readiness, layer_ms), daemon=True
                )
                poller.start()
                connected, rounds = asyncio.run(
                    crowd(
                        ws_base,
                        origin,
                        tokens[: args.sockets],
                        args.simultaneous,
                        lambda: {
                            **http_get_json(port, LAG_PATH),
                            **{f"cpu_{key}": value for key, value in http_get_json(port, CPU_PATH).items()},
                        },
                    )
                )
                stop_polling.set()
                poller.join(timeout=15)
        finally:
            fake.terminate()
            fake.wait(timeout=10)
    print(f"chat over the {layer}")
    added = report_sequential(args, direct, socket_results)
    report_cpu(args, cpu, cpu_long)
    all_ok = report_rounds(args, connected, rounds)
    from health.checks import CHECK_TIMEOUT_SECONDS

    ready_ok = sum(1 for status, _, _ in readiness if status == 200)
    failed = next((body for status, _, body in readiness if status != 200), "")
    print(
        f"  readiness polled during the socket rounds: {ready_ok}/{len(readiness)} answered 200"
        f"   (slowest {max((seconds for _, seconds, _ in readiness), default=0) * 1000:.0f} ms;"
        f" channel-layer check p50 {percentile(layer_ms, 0.5) if layer_ms else 0:.0f} ms,"
        f" max {max(layer_ms, default=0):.0f} ms of {CHECK_TIMEOUT_SECONDS:.0f} s)"
        f"{'; first failure: ' + failed[:300] if failed else ''}"
    )
    print("goals (issue 16)")
    if added is not None:
        print(_goal("backend's added time to first token p50 <= 15 ms", added[0] <= 15, f"{added[0]:.1f} ms"))
        print(_goal("backend's added time to first token p95 <= 30 ms", added[1] <= 30, f"{added[1]:.1f} ms"))
    by_name = dict((name, (results, lag)) for name, results, _, lag in rounds)
    if args.simultaneous:
        results, _ = by_name[f"{args.simultaneous} simultaneous questions"]
        ttfts = [r["ttft"] for r in results if r.get("ttft") is not None]
        p95 = percentile(ttfts, 0.95) * 1000 if len(ttfts) == len(results) else float("inf")
        print(
            _goal(f"{args.simultaneous} simultaneous questions: first token p95 <= 2 s", p95 <= 2000, f"{p95:.0f} ms")
        )
    results, lag = by_name[f"{args.sockets} sockets, all asking at once"]
    ok = sum(1 for r in results if r["ok"])
    print(_goal(f"{args.sockets} sockets on one daphne: 100 % answered", ok == args.sockets, f"{ok}/{args.sockets}"))
    print(_goal(f"{args.sockets} sockets: event-loop lag p99 < 50 ms", lag["p99_ms"] < 50, f"{lag['p99_ms']:.1f} ms"))
    return 0 if all_ok and ready_ok == len(readiness) else 1


LONG_WORDS = 400


def _cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def cpu_of_long_answers(
    port: int, fake_url: str, ws_url: str, origin: str, args: argparse.Namespace
) -> dict[str, float] | None:
    """The server's CPU for a quarter of ``--questions`` answers of ``LONG_WORDS`` more words (per token,
    by difference with the short answers)."""
    questions = max(1, args.questions // 4) if args.questions else 0
    if not questions:
        return None
    words = " ".join(f"word{i}" for i in range(args.words + LONG_WORDS))
    configure_fake(fake_url, reply=f"Employees get twenty-five days of vacation [1]. {words}")
    before = http_get_json(port, CPU_PATH)
    asyncio.run(sequential(ws_url, origin, questions))
    delta = _cpu_delta(before, http_get_json(port, CPU_PATH))
    return {**delta, "questions": questions}


def report_cpu(args: argparse.Namespace, cpu: dict[str, float], long: dict[str, float] | None) -> None:
    """The server's own CPU per question and per streamed token (independent of the machine's load)."""
    if not args.questions:
        return
    per = {key: value / args.questions * 1000 for key, value in cpu.items()}
    print(
        f"    daphne CPU per question ({args.words + 8}-word answer, one at a time): {per['process']:.2f} ms"
        f" (event loop {per['loop']:.2f}, chat database threads {per['db_threads']:.2f})"
    )
    if long is not None:
        questions = long.pop("questions")
        token = {key: (long[key] / questions * 1000 - per[key]) / LONG_WORDS * 1000 for key in per}
        base = {key: per[key] - token[key] / 1000 * (args.words + 8) for key in per}
        print(
            f"    daphne CPU per streamed token: {token['process']:.0f} us (event loop {token['loop']:.0f} us);"
            f" per question without its tokens: {base['process']:.2f} ms (event loop {base['loop']:.2f},"
            f" chat database threads {base['db_threads']:.2f})"
        )


def report_sequential(
    args: argparse.Namespace, direct: list[float], socket_results: list[dict[str, Any]]
) -> tuple[float, float] | None:
    """Print the one-socket figures; the (p50, p95) milliseconds the backend adds, None without questions."""
    via = [r["ttft"] for r in socket_results if r["ttft"] is not None]
    if not via or not direct:
        return None
    server_ttft = [r["server_ttft_ms"] for r in socket_results if r.get("server_ttft_ms") is not None]
    p50_direct, p95_direct = percentile(direct, 0.5) * 1000, percentile(direct, 0.95) * 1000
    p50_via, p95_via = percentile(via, 0.5) * 1000, percentile(via, 0.95) * 1000
    print(f"  time to first token over the fake model ({args.questions} questions, one socket, each a new session)")
    print(f"    fake model, openai client direct   p50 {p50_direct:7.2f} ms   p95 {p95_direct:7.2f} ms")
    print(
        f"    through DocuMind's socket          p50 {p50_via:7.2f} ms   p95 {p95_via:7.2f} ms"
        f"   ({sum(r['ok'] for r in socket_results)}/{len(socket_results)} ok)"
    )
    print(
        f"    added by the backend               p50 {p50_via - p50_direct:7.2f} ms   p95 {p95_via - p95_direct:7.2f} ms"
        f"   (server-side ttft_ms p50 {percentile(server_ttft, 0.5):.0f})"
    )
    return p50_via - p50_direct, p95_via - p95_direct


def report_rounds(
    args: argparse.Namespace, connected: int, rounds: list[tuple[str, list[dict[str, Any]], float, dict[str, float]]]
) -> bool:
    """Print each socket round; whether every question of every round was answered completely."""
    print(
        f"  {args.sockets} sockets held open on one daphne (connected {connected}/{args.sockets});"
        f" answers of {args.words + 8} words, {args.token_delay_ms:.0f} ms apart"
    )
    all_ok = connected == args.sockets
    for name, results, elapsed, lag in rounds:
        ok = sum(1 for r in results if r["ok"])
        all_ok = all_ok and ok == len(results)
        errors: dict[str, int] = {}
        for r in results:
            if not r["ok"]:
                errors[str(r.get("error"))] = errors.get(str(r.get("error")), 0) + 1
        print(
            f"  {name}: answered completely {ok}/{len(results)} ({100 * ok / max(1, len(results)):.1f} %)"
            f"{'; errors ' + json.dumps(errors) if errors else ''}; the last ended after {elapsed:.1f} s"
        )
        ttfts = [r["ttft"] for r in results if r.get("ttft") is not None]
        if ttfts:
            print(
                f"    time to first token p50 {percentile(ttfts, 0.5) * 1000:7.1f} ms"
                f"   p95 {percentile(ttfts, 0.95) * 1000:7.1f} ms   max {max(ttfts) * 1000:7.1f} ms"
            )
        frames = [r["frames"] for r in results if r.get("frames")]
        if frames:
            print(
                f"    chat.token frames per answer p50 {percentile(frames, 0.5):.0f}  min {min(frames)}"
                "  (one per model chunk while the server keeps up with a socket, fewer when it fell behind)"
            )
        server_side = [r["server_ttft_ms"] for r in results if r.get("server_ttft_ms") is not None]
        if server_side:
            print(
                f"    of which server-side (question taken up -> first token) p50 {percentile(server_side, 0.5):.0f} ms"
                f"   p95 {percentile(server_side, 0.95):.0f} ms"
            )
        print(
            f"    daphne CPU per question {lag['cpu_process'] / max(1, len(results)) * 1000:.1f} ms"
            f" (event loop {lag['cpu_loop'] / max(1, len(results)) * 1000:.1f},"
            f" chat database threads {lag['cpu_db_threads'] / max(1, len(results)) * 1000:.1f})"
        )
        print(
            f"    daphne event-loop lag ({lag['count']} samples of a {LAG_INTERVAL * 1000:.0f} ms sleep): p50 {lag['p50_ms']:.1f} ms"
            f"  p95 {lag['p95_ms']:.1f} ms  p99 {lag['p99_ms']:.1f} ms  max {lag['max_ms']:.1f} ms"
        )
    return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200, help="one after another on one socket (0: skip)")
    parser.add_argument("--sockets", type=int, default=500, help="held open at once; all ask in the last round")
    parser.add_argument("--simultaneous", type=int, default=200, help="of them ask at once first (0: skip)")
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--token-delay-ms", type=float, default=20.0)
    parser.add_argument("--profile", help="path prefix: cProfile the one-socket questions (<prefix>.loop/.db.pstats)")
    parser.add_argument("--layer", choices=["both", "embedded", "redis"], default="both")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    args = parser.parse_args(argv)
    args.simultaneous = min(args.simultaneous, args.sockets)
    if args.layer != "both":
        return run(args)
    # One process per configuration: Django's settings (channel layer, cache) are read once per process.
    given = list(argv if argv is not None else sys.argv[1:])
    rest = [a for i, a in enumerate(given) if not a.startswith("--layer") and (i == 0 or given[i - 1] != "--layer")]
    codes = [subprocess.run([sys.executable, __file__, *rest, "--layer", "embedded"], cwd=BASE_DIR).returncode]
    if _redis_reachable(args.redis_url):
        codes.append(subprocess.run([sys.executable, __file__, *rest, "--layer", "redis"], cwd=BASE_DIR).returncode)
    else:
        print(f"chat over Redis: skipped, no Redis answers at {args.redis_url} (--redis-url, BENCH_REDIS_URL)")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
