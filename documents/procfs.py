"""What ``/proc`` tells about a process, read without any import beyond the standard library's core.

Imported by the sandboxed child (:mod:`documents.pdf_child`), whose start-up is paid per document, and
by its parent (:mod:`documents.sandbox`).
"""

from __future__ import annotations


def vm_hwm_kb(pid: int | str = "self") -> int:
    """The peak resident set of a live process (``VmHWM``, kB); 0 when unknown (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:  # noqa: PTH123 (hot path: no Path object)
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
