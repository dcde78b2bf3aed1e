"""prometheus-client's multiprocess mode across containers that share one metrics folder.

In multiprocess mode every process writes its samples to ``<kind>_<process id>.db`` files in
``PROMETHEUS_MULTIPROC_DIR`` and ``GET /metrics`` adds up all the files. The client names the files
by PID, which is only unique on one host: the compose file shares the folder between the web and
worker containers, whose PIDs start at 1 in each. The process identifier here is the host name
(a container's id) and the PID. It must be in place before the first metric is created, so the
settings call :func:`use_host_and_pid` (Django loads them before any app).
"""

from __future__ import annotations

import os
import socket


def process_identifier(pid: int | None = None) -> str:
    """``<host>-<pid>``: distinct for processes running at once on every container sharing the folder.

    (No ``_``: the client splits the file names on it.)"""
    host = socket.gethostname().replace("_", "-")
    return f"{host}-{pid or os.getpid()}"


def use_host_and_pid() -> None:
    """With ``PROMETHEUS_MULTIPROC_DIR`` set, name the sample files by :func:`process_identifier`."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue(process_identifier)
