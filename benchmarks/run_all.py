"""``make bench``: run every ``benchmarks/*.py`` (but this one and ``_``-prefixed helpers), one after another.

Each benchmark prints its own figures; a failing one is reported and the others still run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failed = []
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    for script in scripts:
        print(f"== {script.stem} ==", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        print(f"   ({script.stem}: {time.monotonic() - started:.0f} s, exit {result.returncode})\n", flush=True)
        if result.returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
