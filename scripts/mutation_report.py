"""The mutation score per module after ``mutmut run`` (``make mutation``), from mutmut's result files.

Reads ``mutants/<module>.py.meta`` (mutmut 3: ``exit_code_by_key``, the test run's exit code for each
mutant) and prints, per module: killed, survived, timeouts, mutants no test reached, and the score
(killed + timeouts over the mutants that were checked). ``--list`` also names the survivors, to read
with ``mutmut show <name>``. Exit status 1 when a module is under ``--min`` (default 80 %).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
KILLED = {1, 3}
TIMEOUT = {36, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def module_counts(meta: Path) -> tuple[Counter[str], list[str]]:
    """Counts by outcome and the survivors' names of one module's ``.meta`` file."""
    data = json.loads(meta.read_text())
    counts: Counter[str] = Counter()
    survivors = []
    for name, code in sorted(data.get("exit_code_by_key", {}).items()):
        if code is None:
            counts["not checked"] += 1
        elif code in KILLED:
            counts["killed"] += 1
        elif code in TIMEOUT:
            counts["timeout"] += 1
        elif code in SURVIVED:
            counts["survived"] += 1
            survivors.append(name)
        elif code in NO_TESTS:
            counts["no tests"] += 1
            survivors.append(name)
        else:
            counts["other"] += 1
    return counts, survivors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min", type=float, default=80.0, help="lowest acceptable score per module, in percent")
    parser.add_argument("--list", action="store_true", help="name the surviving mutants")
    options = parser.parse_args(argv)

    metas = sorted((BASE_DIR / "mutants").rglob("*.py.meta"))
    if not metas:
        print("No mutmut results under mutants/: run `make mutation` first.")
        return 1
    low = False
    print(f"{'module':<32}{'killed':>8}{'timeout':>9}{'survived':>10}{'no tests':>10}{'unchecked':>11}{'score':>8}")
    for meta in metas:
        module = str(meta.relative_to(BASE_DIR / "mutants")).removesuffix(".meta")
        counts, survivors = module_counts(meta)
        checked = counts["killed"] + counts["timeout"] + counts["survived"] + counts["no tests"]
        score = 100.0 * (counts["killed"] + counts["timeout"]) / checked if checked else 0.0
        low = low or score < options.min
        print(
            f"{module:<32}{counts['killed']:>8}{counts['timeout']:>9}{counts['survived']:>10}"
            f"{counts['no tests']:>10}{counts['not checked']:>11}{score:>7.1f}%"
        )
        if options.list:
            for name in survivors:
                print(f"    survived: {name}")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
