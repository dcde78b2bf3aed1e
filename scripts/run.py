"""``make run``: the embedded default on one machine, stopped cleanly with Ctrl-C.

1. Starts (or reuses) the embedded PostgreSQL under ``var/`` unless ``DATABASE_URL`` is set. This
   process holds the server; the children get a ``DATABASE_URL`` pointing at its unix socket, so
   the server's lifetime is this process's, whatever happens to them.
2. Migrates, makes sure the ``demo`` tenant and its admin exist, and prints how to sign in.
3. Starts our daphne entry point (``python -m config.serve``, which bounds request bodies before
   they are read) serving ``config.asgi:application``, and a Celery worker with beat embedded, each
   in a process group of its own.
4. On Ctrl-C or SIGTERM (or when a child dies): stops both groups (SIGTERM, then SIGKILL after a
   grace period), then releases the database, which stops it when nothing else holds it.

Options: ``--host`` (``HOST``, default 127.0.0.1), ``--port`` (``PORT``, default 8000),
``--concurrency`` (``WORKER_CONCURRENCY``, default 2). ``DOCUMIND_VAR_DIR`` moves ``var/``.

Keys: ``DJANGO_SECRET_KEY`` and ``JWT_SIGNING_KEY`` come from the environment, else from
``var/secret-key`` and ``var/jwt-signing-key``, made once per install (mode 0600). Debug pages are
off unless ``DJANGO_DEBUG`` is set, and refused on a host other than the loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

STOP_GRACE_SECONDS = 20.0


class Stop(Exception):
    """Raised by the signal handler to leave whatever the main thread is doing."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("WORKER_CONCURRENCY", "2")))
    return parser.parse_args(argv)


LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def prepare_keys(var_dir: Path) -> None:
    """Export this install's signing keys to the children (made once under ``var/`` unless set)."""
    from config.keys import KEY_FILES, local_key

    for name in KEY_FILES:
        made = not os.environ.get(name) and not (var_dir / KEY_FILES[name]).exists()
        os.environ[name] = local_key(name, var_dir)
        if made:
            say(f"made a random {name} in {var_dir / KEY_FILES[name]} (kept for the next runs)")


def debug_refused(host: str) -> str | None:
    """Why debug mode may not be used on ``host``, or None."""
    debug = os.environ.get("DJANGO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    if debug and host.strip().lower() not in LOOPBACK_HOSTS and not host.startswith("127."):
        return f"DJANGO_DEBUG is on and --host {host} is not the loopback: debug pages would be public"
    return None


def say(message: str) -> None:
    print(f"[make run] {message}", flush=True)


def start_database(var_dir: Path) -> Any:
    """Start or reuse the embedded server and point ``DATABASE_URL`` (ours and the children's) at it."""
    from config.embedded_db import ensure_database, ensure_server, socket_dir

    pgdata = Path(os.environ.get("EMBEDDED_PGDATA", str(var_dir / "pgdata")))
    say(f"starting the embedded PostgreSQL in {pgdata} ...")
    server = ensure_server(pgdata, cleanup="stop")
    host = socket_dir(server)
    name = os.environ.get("EMBEDDED_DB_NAME", "documind")
    ensure_database(host, name)
    os.environ["DATABASE_URL"] = f"postgresql://postgres@/{name}?host={quote(host)}"
    say(f"PostgreSQL is up (pid {server.get_pid()}, socket in {host})")
    return server


def prepare(password_file: Path) -> Any:
    """Migrate and make sure the demo tenant exists; returns the demo account."""
    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    from config.demo import demo_tenant_ensure

    say("migrating ...")
    call_command("migrate", interactive=False, verbosity=0)
    account = demo_tenant_ensure(password=os.environ.get("DEMO_ADMIN_PASSWORD") or None, password_file=password_file)
    connections.close_all()
    return account


def sign_in_help(account: Any, base_url: str) -> str:
    login = (
        f"curl -s -X POST {base_url}/api/v1/auth/login -H 'X-Tenant-ID: {account.tenant_slug}' "
        f"-H 'Content-Type: application/json' "
        f'-d \'{{"email": "{account.email}", "password": "{account.password}"}}\''
    )
    code = (
        f"curl -s -X POST {base_url}/api/v1/auth/request-code -H 'X-Tenant-ID: {account.tenant_slug}' "
        f"-H 'Content-Type: application/json' -d '{{\"email\": \"{account.email}\"}}'"
    )
    return "\n".join(
        [
            "",
            f"  DocuMind is up on {base_url}   (API docs: {base_url}/docs, readiness: {base_url}/api/v1/health/ready)",
            "",
            f"  Demo tenant '{account.tenant_slug}', admin {account.email}, password {account.password}",
            f"  In a browser: open {base_url}/ and sign in to workspace '{account.tenant_slug}' with this e-mail and password.",
            "  Sign in with the password (the answer holds the access token):",
            f"    {login}",
            "  or with an e-mailed code (printed below by the console e-mail backend):",
            f"    {code}",
            "    then POST {email, code} to /api/v1/auth/verify-code with the same headers.",
            "  Call the API with:  -H 'X-Tenant-ID: demo' -H 'Authorization: Bearer <access>'",
            "",
            "  Press Ctrl-C to stop the server, the worker and the database.",
            "",
        ]
    )


def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start a child in its own process group (so a terminal's Ctrl-C reaches us first)."""
    process = subprocess.Popen(argv, cwd=BASE_DIR, start_new_session=True)
    say(f"started {name} (pid {process.pid})")
    return process


def stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child (daphne and Celery stop their own helpers), then SIGKILL what is left of its group."""
    for name, process in children.items():
        if process.poll() is None:
            say(f"stopping {name} ...")
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in children.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in {STOP_GRACE_SECONDS:.0f}s: killing it")
    # Whatever is left in a child's process group (pool workers, beat) is killed too.
    for process in children.values():
        if _group_alive(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        deadline = time.monotonic() + 5
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spawn_services(args: argparse.Namespace, children: dict[str, subprocess.Popen[bytes]]) -> None:
    """daphne and a Celery worker with beat embedded, added to ``children`` as each starts."""
    bin_dir = Path(sys.executable).parent
    log_level = os.environ.get("LOG_LEVEL", "INFO")
    children["daphne"] = spawn(
        "daphne",
        [
            sys.executable, "-m", "config.serve", "-b", args.host, "-p", str(args.port), "-v", "0",
            "config.asgi:application",
        ],
    )  # fmt: skip
    children["celery worker"] = spawn(
        "celery worker",
        [
            str(bin_dir / "celery"), "-A", "config", "worker", "-B", "-c", str(args.concurrency),
            "-l", log_level, "-n", "documind@%h", "--without-gossip", "--without-mingle",
        ],
    )  # fmt: skip


def wait_for_exit(children: dict[str, subprocess.Popen[bytes]]) -> str:
    """Wait until a child exits and return its name (a signal interrupts the wait with :class:`Stop`)."""
    while True:
        for name, process in children.items():
            code = process.poll()
            if code is not None:
                say(f"{name} exited with status {code}: stopping everything")
                return name
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.chdir(BASE_DIR)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    var_dir = Path(os.environ.get("DOCUMIND_VAR_DIR", str(BASE_DIR / "var"))).resolve()
    os.environ["DOCUMIND_VAR_DIR"] = str(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    refused = debug_refused(args.host)
    if refused:
        say(f"refusing to start: {refused}")
        return 2
    prepare_keys(var_dir)

    def on_signal(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = None
    children: dict[str, subprocess.Popen[bytes]] = {}
    status = 0
    try:
        if os.environ.get("DATABASE_URL"):
            say("using DATABASE_URL")
        else:
            server = start_database(var_dir)
        account = prepare(var_dir / "demo-admin-password")
        spawn_services(args, children)
        say(sign_in_help(account, f"http://{args.host}:{args.port}"))
        exited = wait_for_exit(children)
        status = 1
        raise Stop(exited)
    except Stop as stop:
        if status == 0:
            say(f"{stop.args[0]} received: shutting down")
    except Exception as exc:
        say(f"failed: {type(exc).__name__}: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(children)
        if server is not None:
            from config.embedded_db import release_server

            if release_server(server):
                say("PostgreSQL stopped")
            else:
                say("PostgreSQL left running: another process still uses it")
    say("bye")
    return status


if __name__ == "__main__":
    sys.exit(main())
