"""``make loadtest``: locust's mixed scenario against ``make run`` on loopback, with a verdict.

1. Starts ``scripts/run.py`` (what ``make run`` runs: embedded PostgreSQL, daphne, a Celery worker
   with beat) on a free loopback port with a ``var/`` folder of its own (a temporary one unless
   ``LOADTEST_VAR_DIR`` is given), and waits until ``/api/v1/health/ready`` says 200.
2. Seeds the ``loadtest`` tenant (:mod:`benchmarks.loadtest.seed`), then warms up as its admin:
   uploads one PDF per topic and waits until each is ready, searches and asks once (the first
   search and the first ingestion load the embedding model; that is not growth under load).
3. Records the resident memory of the server's processes, runs locust headless
   (:mod:`benchmarks.loadtest.locustfile`) for ``LOADTEST_SECONDS`` (120) with ``LOADTEST_USERS``
   people (10) and ``LOADTEST_SIGNERS`` users signing in (2), waits until the uploads made under
   load are ingested, and records the memory again. ``LOADTEST_AUTH_PER_MINUTE`` lowers make run's
   sign-in limit (``RATELIMIT_AUTH_PER_MINUTE``, 10) for short runs on a slow machine.
4. Stops ``make run`` with SIGTERM and checks that none of its processes is left.

Prints the count, failures, p50, p95 and max of each endpoint, the intended 429s (sign-in over its
limit) apart, the memory of each process group before and after, and the machine's load. Exits 1
when a request failed (any status but the intended 429s, an SSE stream without ``chat.end``), an
upload made under load did not reach ``ready``, an endpoint was never exercised, the memory of
daphne plus the Celery worker grew by more than ``LOADTEST_MAX_GROWTH_MB`` (50), or a process was
left behind. ``LOADTEST_REPORT=<path>`` also writes the figures as JSON.

PostgreSQL's memory is shown but not judged: its RSS counts the shared buffers each backend has
touched so far, which grows with use and is not a leak.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil

from benchmarks._common import free_port, wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INTENDED_SUFFIX = "(429 intended)"
# Endpoints that must have been exercised successfully in every run (sign-in successes are counted apart).
REQUIRED = [
    "GET /api/v1/documents/",
    "POST /api/v1/search/",
    "POST /api/v1/documents/",
    "POST /api/v1/chat/sessions/{id}/messages/ (SSE headers)",
    "SSE chat: first token",
    "SSE chat: whole answer",
    "POST /api/v1/auth/login",
    "POST /api/v1/auth/login (429 intended)",
]
# Environment of the test session or of another install, which must not reach this ``make run``.
DROPPED_ENV = {
    "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMBEDDED_PGDATA", "EMBEDDED_PG_CLEANUP", "CELERY_BROKER_DIR",
    "MEDIA_ROOT", "DJANGO_SETTINGS_MODULE", "XDG_RUNTIME_DIR", "DOCUMIND_TEST_ROOT", "DOCUMIND_TEST_SUBPROCESS",
    "DJANGO_SECRET_KEY", "JWT_SIGNING_KEY", "DJANGO_DEBUG", "CELERY_TASK_DEFAULT_QUEUE", "PYTEST_CURRENT_TEST",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "CHAT_PROVIDER", "EMBEDDING_PROVIDER", "RATELIMIT_ENABLED",
    "RATELIMIT_PER_MINUTE", "RATELIMIT_AUTH_PER_MINUTE", "METRICS_TOKEN", "WEBHOOK_SECRET_KEYS",
}  # fmt: skip


@dataclass
class Options:
    """What the environment asks of this run."""

    seconds: int = int(os.environ.get("LOADTEST_SECONDS", "120"))
    users: int = int(os.environ.get("LOADTEST_USERS", "10"))
    signers: int = int(os.environ.get("LOADTEST_SIGNERS", "2"))
    spawn_rate: float = float(os.environ.get("LOADTEST_SPAWN_RATE", "5"))
    max_growth_mb: float = float(os.environ.get("LOADTEST_MAX_GROWTH_MB", "50"))
    auth_per_minute: str = os.environ.get("LOADTEST_AUTH_PER_MINUTE", "")  # make run's sign-in limit; "": its own
    var_dir: str = os.environ.get("LOADTEST_VAR_DIR", "")
    report: str = os.environ.get("LOADTEST_REPORT", "")


STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[loadtest {time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


# --- make run ------------------------------------------------------------------------------------
@dataclass
class Server:
    """``scripts/run.py`` as a child in its own process group."""

    process: subprocess.Popen[bytes]
    var_dir: Path
    port: int
    log: Path
    env: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def postmaster(self) -> psutil.Process | None:
        with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
            pid = int((self.var_dir / "pgdata" / "postmaster.pid").read_text().splitlines()[0])
            return psutil.Process(pid)
        return None

    def processes(self) -> dict[str, list[psutil.Process]]:
        """The server's processes by group: ``daphne``, ``celery`` (worker, pool, beat), ``run.py``, ``postgres``."""
        groups: dict[str, list[psutil.Process]] = {"daphne": [], "celery": [], "run.py": [], "postgres": []}
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            groups["run.py"].append(root)
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    line = " ".join(child.cmdline())
                    if "config.serve" in line:
                        groups["daphne"].append(child)
                    elif "celery" in line:
                        groups["celery"].append(child)
                    elif "postgres" in line:
                        groups["postgres"].append(child)
                    else:
                        groups["run.py"].append(child)
        postmaster = self.postmaster()
        if postmaster is not None and postmaster not in groups["postgres"]:
            groups["postgres"].append(postmaster)
            with contextlib.suppress(psutil.Error):
                groups["postgres"] += [p for p in postmaster.children(recursive=True) if p not in groups["postgres"]]
        return groups


def run_env(var_dir: Path, options: Options) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    env.update(DOCUMIND_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING", DEMO_ADMIN_PASSWORD="")
    if options.auth_per_minute:
        env["RATELIMIT_AUTH_PER_MINUTE"] = options.auth_per_minute
    return env


def start_server(var_dir: Path, log: Path, options: Options) -> Server:
    port = free_port()
    env = run_env(var_dir, options)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "scripts/run.py", "--port", str(port)], cwd=BASE_DIR, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    server = Server(process, var_dir, port, log, env)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"make run exited with {process.returncode}:\n{server.output()}")
        try:
            return httpx.get(f"{server.base}/api/v1/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    say(f"starting make run (scripts/run.py) on {server.base}, var in {var_dir} ...")
    started = time.monotonic()
    try:
        wait_until(ready, timeout=300, what="make run answering /api/v1/health/ready with 200", interval=0.5)
    except BaseException:
        stop_server(server)
        raise
    say(f"ready after {time.monotonic() - started:.1f}s")
    return server


def stop_server(server: Server) -> list[str]:
    """SIGTERM ``make run``; return what is wrong afterwards (its exit status, processes left)."""
    before = [p for group in server.processes().values() for p in group]
    problems = []
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=90)
        if code != 0:
            problems.append(f"make run exited with {code} on SIGTERM")
    except subprocess.TimeoutExpired:
        problems.append("make run did not stop within 90s of SIGTERM")
    left = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in before if _running(p)]
        left += [
            p for p in psutil.process_iter(["cmdline"])
            if str(server.var_dir) in " ".join(p.info["cmdline"] or []) and _running(p) and p not in left
        ]  # fmt: skip
        if not left:
            break
        time.sleep(0.2)
    if left:
        problems.append("left running: " + "; ".join(_describe(p) for p in left))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGKILL)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return problems


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{process.pid} {' '.join(process.cmdline())[:120]}"
    return str(process.pid)


def memory(server: Server) -> dict[str, float]:
    """Resident memory (MB) of each process group, and ``app`` = daphne + celery."""
    sizes = {}
    for name, processes in server.processes().items():
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        sizes[name] = total / 2**20
    sizes["app"] = sizes["daphne"] + sizes["celery"]
    return sizes


# --- seeding and warm-up -------------------------------------------------------------------------
def database_url(server: Server) -> str:
    """make run's database, by the socket its PostgreSQL listens on (from ``postmaster.pid``).

    Given to the seed as ``DATABASE_URL``, so that it is not one more holder of the embedded server
    (a holder killed mid-way would keep make run from stopping PostgreSQL).
    """
    lines = (server.var_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/documind?host={quote(socket_dir)}&port={port}"


def seed(server: Server, folder: Path, people: int) -> dict[str, Any]:
    out = folder / "credentials.json"
    env = {**server.env, "LOG_LEVEL": "ERROR", "DATABASE_URL": database_url(server)}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadtest.seed", "--out", str(out), "--people", str(people)],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    if result.returncode:
        raise RuntimeError(f"seeding failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(out.read_text())


def admin_client(server: Server, credentials: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=server.base,
        timeout=60,
        headers={"X-Tenant-ID": credentials["tenant"], "Authorization": f"Bearer {credentials['admin']['access']}"},
    )


def documents_in(client: httpx.Client, *statuses: str) -> int:
    """How many of the tenant's documents are in any of ``statuses`` (one request: the admin has a rate limit too)."""
    response = client.get("/api/v1/documents/", params={"status": list(statuses), "page_size": 1})
    response.raise_for_status()
    return response.json()["count"]


def wait_for_ingestion(client: httpx.Client, *, timeout: float) -> dict[str, int]:
    """Wait (polling every 2 s) until no document is pending or processing; the count of each status."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: documents_in(client, "pending", "processing") == 0, timeout=timeout, what="", interval=2)
    return {status: documents_in(client, status) for status in ("pending", "processing", "ready", "failed")}


def warm_up(server: Server, credentials: dict[str, Any]) -> None:
    """One upload per topic (each waited for until ready), one search, one answer: loads what loads once."""
    from benchmarks.loadtest.content import QUESTIONS, TOPICS, make_pdf

    with admin_client(server, credentials) as client:
        for topic, sentence in TOPICS:
            response = client.post(
                "/api/v1/documents/",
                files={"file": (f"{topic}.pdf", make_pdf(topic, sentence), "application/pdf")},
                data={"title": f"About the {topic}"},
            )
            if response.status_code != 202:
                raise RuntimeError(f"warm-up upload: {response.status_code} {response.text[:500]}")
        counts = wait_for_ingestion(client, timeout=300)
        if counts["failed"] or counts["ready"] != len(TOPICS):
            raise RuntimeError(f"warm-up ingestion: {counts}\n{server.output()}")
        search = client.post("/api/v1/search/", json={"query": QUESTIONS[0], "top_k": 5, "mode": "hybrid"})
        if search.status_code != 200 or not search.json()["results"]:
            raise RuntimeError(f"warm-up search: {search.status_code} {search.text[:500]}")
        session = client.post("/api/v1/chat/sessions/", json={"title": "warm-up"}).json()["id"]
        answer = client.post(f"/api/v1/chat/sessions/{session}/messages/", json={"content": QUESTIONS[0]})
        if answer.status_code != 201:
            raise RuntimeError(f"warm-up answer: {answer.status_code} {answer.text[:500]}")


# --- locust --------------------------------------------------------------------------------------
def run_locust(server: Server, options: Options, folder: Path, credentials_path: Path) -> Path:
    prefix = folder / "locust"
    argv = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--host", server.base,
        "-u", str(options.users + options.signers), "-r", str(options.spawn_rate), "-t", f"{options.seconds}s",
        "--stop-timeout", "30", "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {
        **os.environ, "LOADTEST_CREDENTIALS": str(credentials_path), "LOADTEST_SIGNERS": str(options.signers),
        "PYTHONPATH": str(BASE_DIR),
    }  # fmt: skip
    say(f"locust: {options.users} people and {options.signers} signing in, {options.seconds}s ...")
    log = folder / "locust.log"
    with log.open("wb") as out:
        result = subprocess.run(
            argv, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=options.seconds + 180
        )
    stats = Path(f"{prefix}_stats.csv")
    if not stats.exists():
        raise RuntimeError(f"locust wrote no statistics (exit {result.returncode}):\n{log.read_text()[-4000:]}")
    return prefix


def read_stats(prefix: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    def number(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            return 0.0

    rows = []
    with Path(f"{prefix}_stats.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                continue
            rows.append(
                {
                    "name": row["Name"],
                    "count": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "p50_ms": number(row["50%"]),
                    "p95_ms": number(row["95%"]),
                    "max_ms": number(row["Max Response Time"]),
                    "rps": number(row["Requests/s"]),
                }
            )
    failures_path = Path(f"{prefix}_failures.csv")
    failures = list(csv.DictReader(failures_path.open())) if failures_path.exists() else []
    return rows, failures


# --- the verdict ---------------------------------------------------------------------------------
@dataclass
class Report:
    seconds: int
    users: int
    signers: int
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    intended_429: int = 0
    errors: int = 0
    documents: dict[str, int] = field(default_factory=dict)
    memory_idle: dict[str, float] = field(default_factory=dict)
    memory_before: dict[str, float] = field(default_factory=dict)
    memory_after: dict[str, float] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return self.__dict__

    def print(self) -> None:
        say(f"{self.seconds}s, {self.users} people + {self.signers} signing in; machine: {self.load}")
        print(f"  {'endpoint':<62} {'count':>6} {'fail':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for row in sorted(self.endpoints, key=lambda r: r["name"]):
            print(
                f"  {row['name']:<62} {row['count']:>6} {row['failures']:>5} {row['p50_ms']:>8.0f} "
                f"{row['p95_ms']:>8.0f} {row['max_ms']:>8.0f}"
            )
        print(f"  intended 429s (sign-in over its limit): {self.intended_429}; errors: {self.errors}")
        for failure in self.failures[:10]:
            print(
                f"    {failure.get('Occurrences')}x {failure.get('Method')} {failure.get('Name')}: {failure.get('Error')}"
            )
        print(f"  documents after the run: {self.documents}")
        print("  resident memory, MB (idle / after warm-up / after the run, growth under load):")
        for name in ("daphne", "celery", "app", "run.py", "postgres"):
            idle, before, after = (
                self.memory_idle.get(name, 0),
                self.memory_before.get(name, 0),
                self.memory_after.get(name, 0),
            )
            print(f"    {name:<9} {idle:8.1f} {before:8.1f} {after:8.1f}   {after - before:+7.1f}")
        print(
            "  verdict: " + ("PASS" if not self.problems else "FAIL\n    - " + "\n    - ".join(self.problems)),
            flush=True,
        )


def judge(report: Report, options: Options) -> None:
    by_name = {row["name"]: row for row in report.endpoints}
    report.intended_429 = sum(row["count"] for row in report.endpoints if row["name"].endswith(INTENDED_SUFFIX))
    report.errors = sum(row["failures"] for row in report.endpoints)
    if report.errors:
        report.problems.append(f"{report.errors} requests failed (other than the intended 429s)")
    for name in REQUIRED:
        row = by_name.get(name)
        if row is None or row["count"] - row["failures"] <= 0:
            report.problems.append(f"never exercised successfully: {name}")
    if report.documents.get("failed"):
        report.problems.append(f"{report.documents['failed']} uploaded documents failed to ingest")
    if report.documents.get("pending", 0) + report.documents.get("processing", 0):
        report.problems.append(f"documents still being ingested after the run: {report.documents}")
    growth = report.memory_after["app"] - report.memory_before["app"]
    if growth > options.max_growth_mb:
        report.problems.append(
            f"daphne + celery memory grew by {growth:.1f} MB under load (limit {options.max_growth_mb:.0f} MB)"
        )


def machine_load() -> dict[str, Any]:
    one, five, _ = os.getloadavg()
    return {"cpus": os.cpu_count(), "load_1m": round(one, 2), "load_5m": round(five, 2)}


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # leaves through main's clean-up: make run is stopped, not orphaned


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    options = Options()
    folder = Path(options.var_dir).resolve() if options.var_dir else Path(tempfile.mkdtemp(prefix="documind-loadtest-"))
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(seconds=options.seconds, users=options.users, signers=options.signers)
    load_before = machine_load()
    server = start_server(folder / "var", folder / "make-run.log", options)
    try:
        report.memory_idle = memory(server)
        credentials = seed(server, folder, options.users)
        credentials_path = folder / "credentials.json"
        say("warming up (one upload per topic, one search, one answer) ...")
        warm_up(server, credentials)
        report.memory_before = memory(server)
        prefix = run_locust(server, options, folder, credentials_path)
        report.endpoints, report.failures = read_stats(prefix)
        with admin_client(server, credentials) as client:
            report.documents = wait_for_ingestion(client, timeout=120)
        report.memory_after = memory(server)
        report.load = {"before": load_before, "after": machine_load()}
        judge(report, options)
    except BaseException as exc:
        report.problems.append(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        problems = stop_server(server)
        report.problems += problems
        if report.endpoints:
            report.print()
        else:
            for problem in report.problems:
                say(problem)
            say("make run's output:\n" + server.output())
        if options.report:
            Path(options.report).write_text(json.dumps(report.as_json(), indent=2))
        if not options.var_dir:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            say(f"logs and figures kept in {folder}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
