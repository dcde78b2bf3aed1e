"""App modules stay small enough to hold in mind: none over 400 lines, no function over 60.

Every top-level folder with an ``apps.py`` is an app (``config`` included); each of its modules is
read with ``ast``, except settings, migrations and anything under the folders of
:data:`EXCLUDED_DIRS`. A module's length is its line count (``wc -l``); a function's runs from its
``def`` line to its last line (decorators aside, nested functions and methods each on their own).
A module that passes the limit is split by job, a function into named steps (issue 10).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
EXCLUDED_DIRS = frozenset(
    {"settings", "migrations", "tests", "benchmarks", "scripts", "clients", ".venv", "mutants", "__pycache__"}
)


def app_modules(root: Path) -> Iterator[Path]:
    """The Python modules of every app under ``root`` (folders with an ``apps.py``), exclusions aside."""
    for app in sorted(path.parent for path in root.glob("*/apps.py")):
        for module in sorted(app.rglob("*.py")):
            if not EXCLUDED_DIRS & set(module.relative_to(root).parts):
                yield module


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method in ``tree`` with its dotted name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def oversized(root: Path) -> dict[str, int]:
    """``{"app/module.py": lines}`` for modules over the limit and ``{"app/module.py:function": lines}``
    for functions over it."""
    found: dict[str, int] = {}
    for module in app_modules(root):
        name = module.relative_to(root).as_posix()
        source = module.read_text(encoding="utf-8")
        lines = len(source.splitlines())
        if lines > MAX_MODULE_LINES:
            found[name] = lines
        for qualname, node in _functions(ast.parse(source, filename=str(module))):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found[f"{name}:{qualname}"] = length
    return found


def test_app_modules_and_functions_stay_under_the_limits() -> None:
    over = oversized(ROOT)
    assert not over, (
        f"Over the limits (modules {MAX_MODULE_LINES} lines, functions {MAX_FUNCTION_LINES}): "
        + ", ".join(f"{name} ({lines} lines)" for name, lines in sorted(over.items()))
    )


def test_the_walk_sees_every_app() -> None:
    """The check reads the apps' modules (a walk that finds nothing would pass anything)."""
    seen = {module.relative_to(ROOT).as_posix() for module in app_modules(ROOT)}
    for expected in ("config/errors.py", "documents/ingestion.py", "chat/consumers.py", "tasks/tracking.py"):
        assert expected in seen
    assert not any("/migrations/" in name or name.startswith("config/settings/") for name in seen)


def _app(root: Path, name: str, files: dict[str, str]) -> None:
    app = root / name
    app.mkdir(parents=True)
    (app / "apps.py").write_text("")
    for path, text in files.items():
        (app / path).parent.mkdir(parents=True, exist_ok=True)
        (app / path).write_text(text)


def _function(name: str, lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x = {i}\n" for i in range(lines - 1))
    return f"{indent}def {name}() -> None:\n{body}"


def test_the_check_names_a_module_over_400_lines_and_a_function_over_60(tmp_path: Path) -> None:
    method = "class Service:\n" + _function("big_method", 61, indent="    ")
    _app(
        tmp_path,
        "shop",
        {
            "long.py": "x = 1\n" * 401,
            "fits.py": "x = 1\n" * 400,
            "functions.py": _function("big", 61) + _function("fits", 60) + method,
            "migrations/0001_initial.py": "x = 1\n" * 1000,
        },
    )
    _app(tmp_path, "config", {"settings/base.py": "x = 1\n" * 1000})
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "run.py").write_text("x = 1\n" * 1000)  # not an app

    assert oversized(tmp_path) == {
        "shop/long.py": 401,
        "shop/functions.py:big": 61,
        "shop/functions.py:Service.big_method": 61,
    }
