"""``manage.py ingest``: bulk loading from files and folders, inline or queued."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import User
from documents.models import Chunk, Document, Project
from tasks.models import Task
from tests.documents.conftest import KNOWN_SENTENCE, known_pages
from tests.documents.pdfs import encrypt_pdf, filler, make_image_pdf, make_pdf


def run(*args: str) -> str:
    out = StringIO()
    call_command("ingest", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.pdf").write_bytes(make_pdf(known_pages()))
    (tmp_path / "sub" / "b.PDF").write_bytes(make_pdf([filler(100, seed=5)]))
    (tmp_path / "notes.txt").write_text("not a pdf, and not picked up by the folder scan")
    return tmp_path


def test_ingests_a_folder_inline(folder: Path, tenant: Any, admin_user: User) -> None:
    output = run(tenant.slug, str(folder), "--project", "Archive")

    documents = Document.objects.filter(tenant=tenant)
    assert documents.count() == 2
    assert set(documents.values_list("status", flat=True)) == {"ready"}
    assert set(documents.values_list("owner", flat=True)) == {admin_user.pk}
    project = Project.objects.get(tenant=tenant, name="Archive")
    assert set(documents.values_list("project", flat=True)) == {project.pk}
    assert Chunk.objects.filter(tenant=tenant, text__contains=KNOWN_SENTENCE).exists()
    assert set(Task.objects.filter(tenant=tenant).values_list("status", flat=True)) == {"completed"}
    # The task ran through Celery's API: its base class claimed, started and completed the row.
    for task in Task.objects.filter(tenant=tenant):
        assert task.celery_task_name == "documents.ingest" and task.celery_task_id
        assert (task.attempts, task.stage, task.progress) == (1, "done", 100)
        assert task.result["chunks"] > 0 and task.timings["embed"] > 0
    assert "1/2 a.pdf: ready" in output and "2/2 b.PDF: ready" in output
    assert "Done in" in output and "2 ready" in output

    again = run(tenant.slug, str(folder / "a.pdf"), "--no-progress")
    assert "duplicate" in again
    assert Document.objects.filter(tenant=tenant).count() == 2


def test_reports_failures_and_exits_non_zero(tmp_path: Path, tenant: Any, user: User) -> None:
    (tmp_path / "scan.pdf").write_bytes(make_image_pdf())
    (tmp_path / "locked.pdf").write_bytes(encrypt_pdf(make_pdf(["x"]), user_password="pw"))
    (tmp_path / "ok.pdf").write_bytes(make_pdf(["fine text here"]))
    out = StringIO()
    with pytest.raises(CommandError, match="2 of 3"):
        call_command("ingest", tenant.slug, str(tmp_path), "--owner", user.email, stdout=out)
    output = out.getvalue()
    assert "locked.pdf: failed: pdf_encrypted" in output
    assert "scan.pdf: failed: pdf_no_text" in output
    assert "ok.pdf: ready" in output
    assert Document.objects.get(tenant=tenant, original_filename="scan.pdf").status == "failed"
    scan_task = Document.objects.get(tenant=tenant, original_filename="scan.pdf").task
    assert (scan_task.status, scan_task.error["type"]) == ("failed", "pdf_no_text")
    assert not Document.objects.filter(tenant=tenant, original_filename="locked.pdf").exists()


def test_queue_hands_files_to_the_workers(
    folder: Path, tenant: Any, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        output = run(tenant.slug, str(folder), "--queue")
    assert output.count("queued") >= 2
    assert len(callbacks) == 2
    assert set(Document.objects.filter(tenant=tenant).values_list("status", flat=True)) == {"pending"}


def test_bad_arguments(tmp_path: Path, tenant: Any, admin_user: User) -> None:
    with pytest.raises(CommandError, match="No tenant"):
        run("nope", str(tmp_path))
    with pytest.raises(CommandError, match="No such file"):
        run(tenant.slug, str(tmp_path / "missing.pdf"))
    with pytest.raises(CommandError, match="No PDF files"):
        run(tenant.slug, str(tmp_path))
    with pytest.raises(CommandError, match="No active user"):
        run(tenant.slug, str(tmp_path), "--owner", "ghost@acme.test")


def test_a_file_already_in_the_tenant_joins_the_project_or_says_which_holds_it(
    tmp_path: Path, tenant: Any, admin_user: User
) -> None:
    (tmp_path / "a.pdf").write_bytes(make_pdf(known_pages()))
    (tmp_path / "b.pdf").write_bytes(make_pdf([filler(100, seed=9)]))
    run(tenant.slug, str(tmp_path / "a.pdf"), "--no-progress")  # in no project
    run(tenant.slug, str(tmp_path / "b.pdf"), "--no-progress", "--project", "Legal")

    output = run(tenant.slug, str(tmp_path), "--no-progress", "--project", "Archive")
    a = Document.objects.get(tenant=tenant, original_filename="a.pdf")
    b = Document.objects.get(tenant=tenant, original_filename="b.pdf")
    assert a.project.name == "Archive"  # added to the project asked for
    assert f"a.pdf: duplicate: already ready as {a.pk}; added to project 'Archive'" in output
    assert b.project.name == "Legal"  # a document is in one project: not moved, and the line says where
    assert f"b.pdf: duplicate: already ready as {b.pk} in project 'Legal'" in output
    assert Document.objects.filter(tenant=tenant).count() == 2

    again = run(tenant.slug, str(tmp_path / "a.pdf"), "--no-progress", "--project", "Archive")
    assert "in project 'Archive'" in again


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_wait_follows_queued_files_to_the_end(
    folder: Path, tenant: Any, admin_user: User, celery_worker_proc: Any
) -> None:
    output = run(tenant.slug, str(folder), "--queue", "--wait", "--no-progress", "--timeout", "120")
    assert set(Document.objects.filter(tenant=tenant).values_list("status", flat=True)) == {"ready"}
    assert "a.pdf: ready" in output and "b.PDF: ready" in output
    assert "Done in" in output and "2 ready" in output and "queued" not in output.rsplit("Done in", 1)[1]

    with pytest.raises(CommandError, match="--wait follows queued documents"):
        run(tenant.slug, str(folder), "--wait")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_progress_bar_on_a_terminal_is_not_broken_by_log_lines(
    folder: Path, tenant: Any, admin_user: User, subprocess_env: dict[str, str]
) -> None:
    """On a terminal (a pty), tqdm draws the bar and every log line and result line starts on a line of
    its own: the visible text of each line (after the bar's last carriage return) is the line itself."""
    import fcntl
    import os
    import pty
    import re
    import struct
    import subprocess
    import sys
    import termios

    from tests.subprocesses import BASE_DIR

    env = {**subprocess_env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "console", "COLUMNS": "120"}
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", tenant.slug, str(folder)],
        cwd=BASE_DIR, env=env, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert process.wait(timeout=120) == 0
    output = b"".join(chunks).decode(errors="replace")
    assert "%|" in output  # tqdm drew its bar
    # The terminal turns "\n" into "\r\n"; within a line, "\r" returns to its start and what follows
    # overwrites it: what stays visible is the text after the last one.
    lines = output.replace("\r\n", "\n").split("\n")
    visible = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line).rsplit("\r", 1)[-1] for line in lines]
    logged = [line for line in visible if "document_ingested" in line]
    results = [line for line in visible if ".pdf: ready" in line.lower()]
    assert len(logged) == 2 and len(results) == 2, visible
    for line in logged:
        assert re.match(r"\d{4}-\d\d-\d\dT", line), line  # the log line itself, not a bar fragment
    for line in results:
        assert re.match(r"\d/2 ", line), line
    assert "%|" not in "".join(logged + results)
