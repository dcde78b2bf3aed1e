"""The README's walk-through, run as written against a live server (daphne + a Celery worker).

The code blocks between ``<!-- walkthrough:start -->`` and ``<!-- walkthrough:end -->`` run in order in
one bash process (so shell variables carry from block to block), the ``python`` blocks with this
interpreter (the project's ``.venv``, which has ``websockets``). The only change made to them: the
address ``127.0.0.1:8000`` becomes this test's server. They run in a folder that looks like the
repository to them: ``.venv`` and ``manage.py`` link to the real ones, ``var/demo-admin-password`` holds
the demo admin's password, and ``handbook.pdf`` is a PDF with a vacation policy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from tests.chat.conftest import HANDBOOK
from tests.documents.pdfs import make_pdf
from tests.factories import TenantFactory, UserFactory
from tests.subprocesses import BASE_DIR, build_subprocess_env, daphne_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def walkthrough_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the README's walk-through, in order."""
    readme = (BASE_DIR / "README.md").read_text()
    section = readme.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(section)]


def as_bash_script(blocks: list[tuple[str, str]], address: str) -> str:
    lines = ["set -euo pipefail"]
    for number, (language, code) in enumerate(blocks, 1):
        code = code.replace("127.0.0.1:8000", address)
        lines.append(f"echo '### block {number} ({language})'")
        if language == "sh":
            lines.append(code)
        elif language == "python":
            lines.append(f"{sys.executable} - <<'WALKTHROUGH_PYTHON'\n{code}WALKTHROUGH_PYTHON")
        else:
            raise AssertionError(f"block {number}: no way to run a {language!r} block")
    return "\n".join(lines) + "\n"


def test_the_walkthrough_has_the_steps_it_promises() -> None:
    blocks = walkthrough_blocks()
    text = "\n".join(code for _, code in blocks)
    assert [language for language, _ in blocks].count("python") == 2
    socket_client = [code for language, code in blocks if language == "python" and "chat.message" in code]
    assert len(socket_client) == 1 and len(socket_client[0].strip().splitlines()) <= 11  # "ten lines"
    for needle in (
        "/auth/login", "/projects/", "/documents/", "/search/", "/chat/sessions/", "/ws/chat/", "document.status",
        "/tasks/", "manage.py ingest", "manage.py task_watchdog", "createsuperuser --email",
    ):  # fmt: skip
        assert needle in text, needle


def test_the_readme_walkthrough_runs_as_written(start_celery_worker: Any, tmp_path: Path) -> None:
    demo = TenantFactory(slug="demo", name="Demo")
    admin = UserFactory(tenant=demo, email="admin@demo.local", role=User.Role.ADMIN)
    password = "walk-through-password-1"
    admin.set_password(password)
    admin.save()

    home = tmp_path / "repo"
    (home / "var").mkdir(parents=True)
    (home / ".venv").symlink_to(BASE_DIR / ".venv")
    (home / "manage.py").symlink_to(BASE_DIR / "manage.py")
    (home / "var" / "demo-admin-password").write_text(password + "\n")
    (home / "handbook.pdf").write_bytes(make_pdf(HANDBOOK))

    env = build_subprocess_env(EMBEDDING_PROVIDER="hashing", CHAT_PROVIDER="extractive", LOG_LEVEL="WARNING")
    with start_celery_worker(env=env), daphne_server(env, tmp_path / "daphne.log") as base:
        script = as_bash_script(walkthrough_blocks(), base.removeprefix("http://"))
        (tmp_path / "walkthrough.sh").write_text(script)
        result = subprocess.run(
            ["bash", str(tmp_path / "walkthrough.sh")], cwd=home, env=env, capture_output=True, text=True, timeout=300
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]

    blocks = dict(re.findall(r"### block (\d+) \(\w+\)\n(.*?)(?=### block |\Z)", output, re.DOTALL))
    # REST status. Its progress and stage are the task row's, which may still say "95 storing" for a
    # moment after the document turned ready (the row completes just after): the status is the contract.
    assert blocks["4"].strip().splitlines()[-1].startswith("ready "), blocks["4"]
    assert blocks["5"].strip().splitlines()[-1].startswith("ready 100"), blocks["5"]  # socket events
    assert "processing" in blocks["5"], blocks["5"]
    assert "twenty-five days" in blocks["6"] and '"chunk_id":"' in blocks["6"], blocks["6"]  # search
    assert "twenty-five days" in blocks["7"] and '"citations":[{' in blocks["7"], blocks["7"]  # REST chat
    assert "twenty-five days" in blocks["8"] and "'document_title': 'Employee handbook'" in blocks["8"], blocks["8"]
    assert '"status":"completed"' in blocks["9"] and "Read the vacation policy" in blocks["9"], blocks["9"]
    assert "duplicate" in blocks["10"] and "Handbooks" in blocks["10"], blocks["10"]  # ingest of the same file
    assert User.objects.get(email="ops@example.com").is_superuser
