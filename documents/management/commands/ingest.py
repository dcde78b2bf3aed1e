"""``manage.py ingest <tenant> <paths or folders>...``: bulk-load PDFs for a tenant, with a progress bar.

Each file goes through the same checks and pipeline as an upload (duplicates are recognised and
skipped). By default the Celery task runs right here through Celery's own API (``apply``: the same
task, the same ledger hooks as in a worker), one file after the other, so no worker is needed;
``--queue`` hands the files to the Celery workers instead.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from django.core.files.uploadedfile import UploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from config.errors import DomainError
from documents.ingestion import ingestion_error, progress_listener
from documents.models import Document, Project
from documents.services import document_upload, project_create
from documents.tasks import ingest_document
from tasks.models import Task
from tenants.models import Tenant


class ProgressBar:
    """A one-line bar on a terminal (redrawn in place), plain lines otherwise."""

    def __init__(self, total: int, stream: TextIO, *, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.width = 30

    def draw(self, done: float, label: str) -> None:
        if not self.tty:
            return
        filled = int(self.width * min(done, self.total) / self.total)
        columns = shutil.get_terminal_size((100, 20)).columns
        line = f"[{'#' * filled}{'-' * (self.width - filled)}] {done:5.1f}/{self.total} {label}"
        self.stream.write("\r" + line[: columns - 1].ljust(columns - 1))
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
        self.stream.write(text + "\n")
        self.stream.flush()


def find_pdfs(paths: list[str]) -> list[Path]:
    """The PDF files named, and those inside the folders named (recursively), sorted, once each."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() == ".pdf":
                    found[child.resolve()] = None
        elif path.is_file():
            found[path.resolve()] = None
        else:
            raise CommandError(f"No such file or folder: {raw}")
    return list(found)


class Command(BaseCommand):
    help = "Load PDF files (or folders of them) into a tenant's documents, with a progress bar."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="Tenant slug or id.")
        parser.add_argument("paths", nargs="+", help="PDF files and/or folders (searched recursively for *.pdf).")
        parser.add_argument("--project", help="Project name or id (a new name creates the project).")
        parser.add_argument(
            "--owner", help="E-mail of the tenant user who will own the documents (default: the first admin)."
        )
        parser.add_argument(
            "--queue", action="store_true", help="Hand the files to the Celery workers instead of ingesting here."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar, one line per file.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = self._tenant(options["tenant"])
        owner = self._owner(tenant, options.get("owner"))
        project = self._project(tenant, options.get("project"))
        files = find_pdfs(options["paths"])
        if not files:
            raise CommandError("No PDF files found.")

        bar = ProgressBar(
            len(files),
            self.stdout._out if hasattr(self.stdout, "_out") else sys.stdout,  # type: ignore[attr-defined]
            enabled=not options["no_progress"],
        )
        counts = {"ready": 0, "queued": 0, "duplicate": 0, "failed": 0}
        started = time.monotonic()
        for number, path in enumerate(files):
            outcome = self._one(path, tenant, owner, project, queue=options["queue"], bar=bar, number=number)
            counts[outcome.split(":", 1)[0]] += 1
            bar.line(f"{number + 1}/{len(files)} {path.name}: {outcome}")
            bar.draw(number + 1, "")
        elapsed = time.monotonic() - started
        summary = ", ".join(f"{value} {key}" for key, value in counts.items() if value)
        bar.line(f"Done in {elapsed:.1f}s: {summary}.")
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} of {len(files)} file(s) failed.")

    def _one(
        self,
        path: Path,
        tenant: Tenant,
        owner: User,
        project: Project | None,
        *,
        queue: bool,
        bar: ProgressBar,
        number: int,
    ) -> str:
        try:
            with path.open("rb") as handle:
                upload = UploadedFile(handle, name=path.name, content_type="application/pdf", size=path.stat().st_size)
                document, duplicate = document_upload(
                    tenant=tenant, owner=owner, upload=upload, project=project, enqueue=queue
                )
        except DomainError as exc:
            return f"failed: {exc.code}: {exc.message}"
        if duplicate:
            return f"duplicate: already {document.status} as {document.pk}"
        if queue:
            return f"queued: {document.pk}"

        return self._run(document, bar=bar, label=path.name, number=number)

    def _run(self, document: Document, *, bar: ProgressBar, label: str, number: int) -> str:
        """Run the ingestion task in this process through Celery's API; the outcome line."""

        def progress(value: int, stage: str) -> None:
            bar.draw(number + value / 100, f"{label}: {stage}")

        with progress_listener(progress):
            outcome = ingest_document.apply(
                kwargs={"document_id": str(document.pk), "task_row_id": str(document.task_id)}, throw=False
            )
        task = Task.objects.get(pk=document.task_id)
        if task.status != Task.Status.COMPLETED:
            error = ingestion_error(task) or {"type": task.status, "message": str(outcome.result or "")}
            return f"failed: {error['type']}: {error['message']}"
        result = task.result
        return f"ready: {result.get('pages', 0)} pages, {result.get('chunks', 0)} chunks ({document.pk})"

    def _tenant(self, value: str) -> Tenant:
        try:
            lookup: dict[str, Any] = {"pk": uuid.UUID(value)}
        except ValueError:
            lookup = {"slug": value.lower()}
        tenant = Tenant.objects.filter(**lookup).first()
        if tenant is None:
            raise CommandError(f"No tenant {value!r}.")
        return tenant

    def _owner(self, tenant: Tenant, email: str | None) -> User:
        users = User.objects.filter(tenant=tenant, is_active=True)
        if email:
            user = users.filter(email__iexact=email.strip()).first()
            if user is None:
                raise CommandError(f"No active user {email!r} in tenant {tenant.slug}.")
            return user
        user = users.filter(role=User.Role.ADMIN).order_by("created_at").first()
        if user is None:
            raise CommandError(f"Tenant {tenant.slug} has no admin; name an owner with --owner.")
        return user

    def _project(self, tenant: Tenant, value: str | None) -> Project | None:
        if not value:
            return None
        try:
            project = Project.objects.filter(tenant=tenant, pk=uuid.UUID(value)).first()
            if project is None:
                raise CommandError(f"No project {value} in tenant {tenant.slug}.")
            return project
        except ValueError:
            pass
        project = Project.objects.filter(tenant=tenant, name=value).first()
        return project or project_create(tenant=tenant, name=value)
