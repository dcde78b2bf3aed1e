"""Mutation testing (mutmut) of the modules where a wrong line leaks data or money, and its score per module.

``--run`` runs ``mutmut run`` on the mutants of :data:`MODULES` (all of a module's functions, or the
ones named), one mutant at a time: the mutants' test runs share the test database and the cache, so
two at once would disturb each other. ``--fresh`` (``make mutation``) first deletes ``mutants/`` so
nothing is reused from an earlier run. Without ``--run`` it only reports the last run's results.

The report reads ``mutants/<module>.py.meta`` (mutmut 3: ``exit_code_by_key``, the test run's exit
code for each mutant) and prints, per module: mutants in scope, killed (a test failed, or the run
timed out), survived, no tests, the survivors explained as equivalent in ``docs/mutation.md``, and the
score: killed over the mutants checked minus the equivalent ones. Exit status 1 when a module is under
``--min`` (80 %) or was not run. ``--list`` shows each unexplained survivor's change (``mutmut show``).

``docs/mutation.md`` explains survivors, one line each:
``- equivalent `<mutant name>` → `<the mutated line>`: <why no test can tell it apart>`` (left out of the
score), or ``- accepted `<name>` → `<line>`: <why no test kills it>`` (still a survivor in the score).
The line guards the claim: mutmut numbers mutants by position in their function, so after an edit the
same name may mean another change; such an entry is reported as stale and not taken into account.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
MUTANTS_DIR = BASE_DIR / "mutants"
EXPLAINED_FILE = BASE_DIR / "docs" / "mutation.md"

# Module -> the functions to mutate (None: all of them). search.py: its filter and plan code only (the
# statements carry the tenant and document filters; the plan picks the exact or the HNSW scan).
MODULES: dict[str, tuple[str, ...] | None] = {
    "tenants/scoping.py": None,
    "tenants/middleware.py": None,
    "accounts/codes.py": None,
    "accounts/authentication.py": None,
    "tenants/usage.py": None,
    "documents/search.py": (
        "_validate",
        "search_filters",
        "exact_plan_sql",
        "plan_statement",
        "use_exact",
        "plan_search",
        "search_statements",
        "semantic_statements",
        "semantic_statement",
        "keyword_statement",
        "hnsw_settings_statement",
    ),
}

KILLED = {1, 3}  # a test failed (3: pytest's internal error, which mutmut counts as a kill)
TIMEOUT = {36, 24, -24, 152, 255}  # SIGXCPU or the wall-clock limit: the mutant made the tests hang
SURVIVED = {0}
NO_TESTS = {5, 33}
EXPLAINED_RE = re.compile(r"^- (?P<kind>equivalent|accepted) `(?P<name>[^`]+)` → `(?P<line>.*?)`: (?P<reason>.+)$")


def dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def mutant_globs(module: str) -> list[str]:
    """Globs of mutmut's names for the module's mutants in scope. They must also match the functions'
    own names, by which mutmut picks the clean run's tests (with none, it runs the whole selection);
    :func:`in_scope` drops what they catch beyond (functions whose names merely start the same)."""
    functions = MODULES[module]
    if functions is None:
        return [f"{dotted(module)}.*"]
    return [f"{dotted(module)}.x_{function}*" for function in functions]


def in_scope(module: str, name: str) -> bool:
    functions = MODULES[module]
    if functions is None:
        return True
    return any(name.startswith(f"{dotted(module)}.x_{function}__mutmut_") for function in functions)


def explained() -> dict[str, tuple[str, str]]:
    """Mutant name -> (kind: ``equivalent`` or ``accepted``, the mutated line), from ``docs/mutation.md``."""
    if not EXPLAINED_FILE.exists():
        return {}
    found = {}
    for line in EXPLAINED_FILE.read_text().splitlines():
        match = EXPLAINED_RE.match(line.strip())
        if match:
            found[match["name"]] = (match["kind"], match["line"].strip())
    return found


def mutated_line(name: str) -> str:
    """The mutant's added lines (stripped, joined with `` / ``), as ``mutmut show`` prints them."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name)
    return " / ".join(
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    )


@dataclass
class ModuleResult:
    module: str
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[str] = field(default_factory=list)  # not explained
    equivalent: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(self.counts[k] for k in ("killed", "timeout", "survived", "no tests"))

    @property
    def score(self) -> float | None:
        tested = self.checked - len(self.equivalent)
        return 100.0 * (self.counts["killed"] + self.counts["timeout"]) / tested if tested else None


def module_result(module: str, claimed: dict[str, tuple[str, str]]) -> ModuleResult:
    result = ModuleResult(module)
    meta = MUTANTS_DIR / f"{module}.meta"
    if not meta.exists():
        return result
    for name, code in sorted(json.loads(meta.read_text()).get("exit_code_by_key", {}).items()):
        if not in_scope(module, name):
            continue
        result.counts["mutants"] += 1
        if code is None:
            result.counts["not checked"] += 1
        elif code in KILLED:
            result.counts["killed"] += 1
        elif code in TIMEOUT:
            result.counts["timeout"] += 1
        elif code in SURVIVED or code in NO_TESTS:
            result.counts["survived" if code in SURVIVED else "no tests"] += 1
            if name in claimed and mutated_line(name) == claimed[name][1]:
                (result.equivalent if claimed[name][0] == "equivalent" else result.accepted).append(name)
            else:
                if name in claimed:
                    result.stale.append(name)
                result.survivors.append(name)
        else:
            result.counts["other"] += 1
    return result


def run(modules: list[str], *, fresh: bool) -> float:
    """``mutmut run`` on the modules' mutants (niced, one at a time); returns the seconds it took."""
    if fresh and MUTANTS_DIR.exists():
        shutil.rmtree(MUTANTS_DIR)
    globs = [glob for module in modules for glob in mutant_globs(module)]
    mutmut = Path(sys.executable).with_name("mutmut")
    started = time.monotonic()
    # mutmut's own exit status says nothing about the score (it is 0 with survivors), so it is not checked.
    subprocess.run(["nice", "-n", "10", str(mutmut), "run", "--max-children", "1", *globs], cwd=BASE_DIR, check=False)
    return time.monotonic() - started


def report(modules: list[str], *, minimum: float, show: bool) -> bool:
    """Print the table; True when every module was run and reaches ``minimum``."""
    claimed = explained()
    os.chdir(BASE_DIR)  # mutmut reads its configuration and mutants/ from the working directory
    print(
        f"{'module':<28}{'mutants':>8}{'killed':>8}{'timeout':>8}{'survived':>9}{'no tests':>9}{'equiv.':>7}"
        f"{'accepted':>9}{'unchecked':>10}{'score':>8}  ≥{minimum:.0f} %"
    )
    ok = True
    for module in modules:
        result = module_result(module, claimed)
        counts, score = result.counts, result.score
        good = score is not None and score >= minimum and not counts["not checked"]
        ok = ok and good
        shown = "   —" if score is None else f"{score:7.1f}%"
        print(
            f"{module:<28}{counts['mutants']:>8}{counts['killed']:>8}{counts['timeout']:>8}{counts['survived']:>9}"
            f"{counts['no tests']:>9}{len(result.equivalent):>7}{len(result.accepted):>9}{counts['not checked']:>10}"
            f"{shown:>8}  "
            f"{'yes' if good else 'NO'}"
        )
        for name in result.stale:
            print(f"    stale equivalence claim (the mutant is another change now): {name}")
        if show:
            for name in result.survivors:
                print(f"    survived: {name}\n        {mutated_line(name)}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"modules to run or report (default: all of {', '.join(MODULES)})")
    parser.add_argument("--run", action="store_true", help="run mutmut first")
    parser.add_argument("--fresh", action="store_true", help="with --run: delete mutants/ first (no cached results)")
    parser.add_argument("--min", type=float, default=80.0, help="lowest acceptable score per module, in percent")
    parser.add_argument("--list", action="store_true", help="show the unexplained survivors and their changes")
    options = parser.parse_args(argv)
    modules = options.modules or list(MODULES)
    unknown = [module for module in modules if module not in MODULES]
    if unknown:
        parser.error(f"not a module of this report: {', '.join(unknown)}")

    if options.run:
        seconds = run(modules, fresh=options.fresh)
        print(f"\nmutmut took {seconds / 60:.1f} min\n")
    elif not MUTANTS_DIR.exists():
        print("No mutmut results under mutants/: run `make mutation` first.")
        return 1
    return 0 if report(modules, minimum=options.min, show=options.list) else 1


if __name__ == "__main__":
    sys.exit(main())
