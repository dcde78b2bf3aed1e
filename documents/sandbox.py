"""Untrusted work (parsing a PDF, recognising a scan) in a child process with hard limits.

Why a child: PDFium is C++. A hostile PDF can make it allocate gigabytes or spend minutes on one
page, and a signal cannot interrupt it in the middle of a call (measured in issue 11: a 72 KB PDF
drove a worker to 3.3 GB at 7 s a page). A child process can be limited and killed; a thread cannot.

The child (``python -m documents.pdf_child <mode> <config json>``) gets, before it runs a line:

* ``RLIMIT_AS`` (address space): an allocation past it fails *in the child* (Python raises
  ``MemoryError``; PDFium and onnxruntime abort). ``RLIMIT_CORE`` 0: no core dumps.
* ``RLIMIT_CPU``: the kernel sends ``SIGXCPU`` at the soft limit, ``SIGKILL`` at the hard one.
* ``PR_SET_PDEATHSIG`` = ``SIGKILL`` (Linux): the kernel kills it when the worker thread that started
  it dies, even by ``SIGKILL``; and the child exits when its stdin reaches end-of-file, which
  happens whenever the parent goes, on any system.

The parent enforces the wall-clock limits: per item (a page: the time spent *waiting* for the next
message, so time the consumer spends chunking and embedding between reads is not charged to the
child) and per run; it kills the child on any limit, on a cancel (the caller's ``checkpoint``
raising), and when it is closed. Messages are msgpack maps on a private pipe (the child's stdout is
pointed at its stderr, so a library that prints cannot corrupt the stream); the child's stderr goes
to a temporary file whose tail is logged when it fails.

The child's peak RSS is its ``VmHWM`` (``/proc/<pid>/status``), reported by the child with every
message and sampled by the parent while it waits and just before a kill: ``ru_maxrss`` from ``wait4``
would be useless, since Linux carries the forked parent's high-water mark over ``exec``. Its CPU
time comes from ``wait4``.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import logging
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from documents.procfs import vm_hwm_kb

logger = logging.getLogger(__name__)

BASE_DIR = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # room for a few hundred pages of text while the consumer embeds


@dataclass(frozen=True)
class Limits:
    """The hard limits of one child: memory (MB of address space), CPU seconds, wall-clock seconds."""

    memory_mb: int
    cpu_seconds: int
    item_seconds: float
    total_seconds: float


class ChildFailed(Exception):
    """The child hit a limit or died. ``reason``: ``memory``, ``time``, ``cpu`` or ``crashed``."""

    def __init__(self, reason: str, message: str, *, item: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.item = item


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (Linux), looked up in the parent: the forked child must not ``dlopen``."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _capped(which: int, soft: int, hard: int) -> tuple[int, int]:
    """``(soft, hard)`` lowered to this process's own hard limit, which the child inherits and cannot raise.

    A worker may already run under one (``ulimit -t``, systemd's ``LimitCPU=``, mutmut's per-mutant
    CPU limit): asking the child for more would fail every document in ``setrlimit``.
    """
    ceiling = resource.getrlimit(which)[1]
    if ceiling == resource.RLIM_INFINITY:
        return soft, hard
    return min(soft, ceiling), min(hard, ceiling)


def _preexec(limits: Limits, parent_pid: int) -> Callable[[], None]:
    memory = limits.memory_mb * 1024 * 1024
    cpu = max(1, int(limits.cpu_seconds))
    memory_limits = _capped(resource.RLIMIT_AS, memory, memory)
    cpu_limits = _capped(resource.RLIMIT_CPU, cpu, cpu + 5)
    prctl = _prctl()

    def apply() -> None:  # runs in the forked child before exec: keep it to system calls
        resource.setrlimit(resource.RLIMIT_AS, memory_limits)
        resource.setrlimit(resource.RLIMIT_CPU, cpu_limits)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return apply


@dataclass
class ChildStats:
    """What the child used: peak RSS (``VmHWM``) and CPU seconds, and how it ended."""

    peak_rss_kb: int = 0
    cpu_seconds: float = 0.0
    returncode: int | None = None


class Child:
    """One sandboxed child: start it, send it messages, receive its messages within the limits."""

    def __init__(self, mode: str, config: dict[str, Any], limits: Limits, *, label: str = "") -> None:
        self.mode = mode
        self.limits = limits
        self.label = label or mode
        self.stats = ChildStats()
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 * 1024 * 1024)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):
            fcntl.fcntl(read_fd, F_SETPIPE_SZ, PIPE_SIZE)
        # One malloc arena: each thread's arena reserves 64 MB of address space, charged to RLIMIT_AS.
        env = {**os.environ, "DOCUMIND_CHILD_FD": str(write_fd), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1"}
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "documents.pdf_child", mode, json.dumps(config)],
                cwd=BASE_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                env=env,
                pass_fds=(write_fd,),
                preexec_fn=_preexec(limits, os.getpid()),  # system calls only: safe enough after fork
                close_fds=True,
            )
        finally:
            os.close(write_fd)
        self._fd = read_fd
        self.started = time.monotonic()
        self._waited = 0.0  # seconds spent waiting since the last message
        self._last_poll: float | None = None
        self._last_sample = 0.0
        self._eof = False
        self._closed = False

    # --- talking ------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Write one message to the child's stdin (ignored once the child is gone)."""
        if self.process.stdin is None or self.process.stdin.closed:
            return
        try:
            self.process.stdin.write(msgpack.packb(message))
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def receive(self, timeout: float) -> list[dict[str, Any]]:
        """The messages that arrive within ``timeout`` seconds (maybe none).

        Raises :class:`ChildFailed` (after killing the child) when a wall-clock limit passes, and
        when the child ends without saying so (killed by a limit, crashed).
        """
        if self._eof:
            return []
        now = time.monotonic()
        # Waiting is charged to the child only while the parent keeps polling: a gap of a second or
        # more means the consumer was busy (chunking, embedding) and the child may have been blocked
        # on a full pipe meanwhile.
        if self._last_poll is not None and now - self._last_poll < 1.0:
            self._waited += now - self._last_poll
        remaining_total = self.limits.total_seconds - (now - self.started)
        remaining_item = self.limits.item_seconds - self._waited
        if remaining_total <= 0:
            self._fail("time", f"took more than {self.limits.total_seconds:g} s in all")
        if remaining_item <= 0:
            self._fail("time", f"took more than {self.limits.item_seconds:g} s on one page")
        wait = max(0.0, min(timeout, remaining_total, remaining_item))
        readable, _, _ = select.select([self._fd], [], [], wait)
        self._waited += time.monotonic() - now
        messages: list[dict[str, Any]] = []
        if readable:
            data = os.read(self._fd, PIPE_SIZE)
            if not data:
                self._eof = True
                self._reap()
            else:
                self._unpacker.feed(data)
                messages = list(self._unpacker)
        self._last_poll = time.monotonic()
        if messages:
            self._waited = 0.0
            for message in messages:
                self._peak(int(message.get("hwm") or 0))
        if self._last_poll - self._last_sample >= 0.2:
            self._sample()
        return messages

    def _peak(self, kb: int) -> None:
        self.stats.peak_rss_kb = max(self.stats.peak_rss_kb, kb)

    def _sample(self) -> None:
        self._last_sample = time.monotonic()
        if self.stats.returncode is None:
            self._peak(vm_hwm_kb(self.process.pid))

    @property
    def finished(self) -> bool:
        """The child closed its end: every message it sent has been received."""
        return self._eof

    def crashed(self) -> bool:
        """Whether the child ended by a signal or an error exit (after :attr:`finished`)."""
        return self.stats.returncode not in (0, None)

    def death_reason(self) -> str:
        """``memory``, ``cpu`` or ``crashed``, guessed from how the child ended."""
        code = self.stats.returncode
        if code in (-signal.SIGXCPU, -signal.SIGKILL) and self.stats.cpu_seconds >= self.limits.cpu_seconds - 1:
            return "cpu"
        tail = self.stderr_tail()
        if "MemoryError" in tail or "Out of memory" in tail or "bad_alloc" in tail or "std::bad_alloc" in tail:
            return "memory"
        if code in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGTRAP, -signal.SIGBUS, -signal.SIGILL):
            # PDFium and onnxruntime abort when an allocation fails: under RLIMIT_AS, the usual cause.
            return "memory"
        return "crashed"

    def stderr_tail(self, size: int = 2000) -> str:
        """The end of what the child wrote to stderr."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            end = self._stderr.tell()
            self._stderr.seek(max(0, end - size))
            return self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    # --- ending -------------------------------------------------------------------------------

    def _fail(self, reason: str, message: str) -> None:
        self.kill()
        raise ChildFailed(reason, message)

    def _reap(self, timeout: float = 5.0) -> None:
        """Wait for the child (``wait4``: its CPU time and how it ended) and keep the figures."""
        if self.stats.returncode is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            except ChildProcessError:
                self.stats.returncode = self.process.poll()
                return
            if pid:
                self.stats.returncode = os.waitstatus_to_exitcode(status)
                self.process.returncode = self.stats.returncode
                self.stats.cpu_seconds = usage.ru_utime + usage.ru_stime
                return
            if time.monotonic() > deadline:
                self._signal_kill()
                deadline = time.monotonic() + timeout
            time.sleep(0.005)

    def _signal_kill(self) -> None:
        # os.kill, not Popen.kill: Popen polls (and so reaps) first, and wait4 would lose the figures.
        # Until we reap it the pid is still this child's (a zombie at worst), never a recycled one.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """Kill the child now (SIGKILL) and reap it."""
        if self.stats.returncode is None:
            self._sample()
            self._signal_kill()
            self._reap()
        self._eof = True

    def close(self) -> None:
        """Kill the child if it still runs and release the pipes."""
        if self._closed:
            return
        self._closed = True
        if self.process.stdin is not None:  # end-of-file: a child that is done exits by itself
            with contextlib.suppress(OSError, BrokenPipeError):
                self.process.stdin.close()
        if self.stats.returncode is None:
            self._reap(timeout=0.2)  # its stdin watcher ends it at once; SIGKILL otherwise
        self.kill()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        if self.process.stdin is not None:
            with contextlib.suppress(OSError, BrokenPipeError):
                self.process.stdin.close()
        self._stderr.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SandboxTimings:
    """Seconds and peaks of one document's children, for the stage timings and the benchmarks."""

    extract_seconds: float = 0.0
    ocr_seconds: float = 0.0
    ocr_pages: int = 0
    extract_peak_rss_kb: int = 0
    ocr_peak_rss_kb: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
