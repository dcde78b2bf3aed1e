"""``manage.py ingest <tenant> <paths or folders>...``: bulk-load PDFs for a tenant, with a progress bar.

Each file goes through the same checks and pipeline as an upload. A file whose bytes the tenant
already has is not stored twice: with ``--project`` it is added to that project when it is in none,
and otherwise the line says which project holds it. By default the Celery task runs right here
through Celery's own API (``apply``: the same task, the same ledger hooks as in a worker), one file
after the other, so no worker is needed; ``--queue`` hands the files to the Celery workers instead,
and ``--wait`` then follows them until each is ready or failed.

The progress bar is tqdm's, on stderr when it is a terminal; log lines and the per-file lines are
written through tqdm (``logging_redirect_tqdm``, ``tqdm.write``), so they never land in the middle of
the bar.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from accounts.models import User
from config.errors import DomainError
from documents.ingestion_progress import ingestion_error, progress_listener
from documents.models import Document, Project
from documents.services import document_update, document_upload, project_create
from documents.tasks import ingest_document
from tasks.models import Task
from tenants.models import Tenant


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
        parser.add_argument(
            "--wait",
            action="store_true",
            help="With --queue: follow the queued documents until each is ready or failed (exit 1 if any failed).",
        )
        parser.add_argument(
            "--timeout", type=float, default=3600, help="With --wait: give up after this many seconds (default 3600)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar, one line per file.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = self._tenant(options["tenant"])
        owner = self._owner(tenant, options.get("owner"))
        project = self._project(tenant, options.get("project"))
        files = find_pdfs(options["paths"])
        if not files:
            raise CommandError("No PDF files found.")
        if options["wait"] and not options["queue"]:
            raise CommandError("--wait follows queued documents: use it with --queue.")

        counts = {"ready": 0, "queued": 0, "duplicate": 0, "failed": 0}
        started = time.monotonic()
        with self._bar(len(files), "file", options) as bar, logging_redirect_tqdm():
            queued: dict[str, str] = {}
            for number, path in enumerate(files):
                outcome, document = self._one(
                    path, tenant, owner, project, queue=options["queue"], bar=bar, number=number
                )
                counts[outcome.split(":", 1)[0]] += 1
                if outcome.startswith("queued") and document is not None:
                    queued[str(document.pk)] = path.name
                self._say(f"{number + 1}/{len(files)} {path.name}: {outcome}")
                bar.n = number + 1
                bar.set_postfix_str("")
        if options["wait"] and queued:
            counts["queued"] = 0
            for outcome in self._wait(queued, options).values():
                counts[outcome] += 1
        summary = ", ".join(f"{value} {key}" for key, value in counts.items() if value)
        self._say(f"Done in {time.monotonic() - started:.1f}s: {summary}.")
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} of {len(files)} file(s) failed.")

    def _bar(self, total: int, unit: str, options: dict[str, Any]) -> tqdm:
        """tqdm's bar on stderr; off with ``--no-progress`` or when stderr is not a terminal."""
        disabled = options["no_progress"] or not sys.stderr.isatty()
        return tqdm(total=total, unit=unit, file=sys.stderr, disable=disabled, dynamic_ncols=True, leave=False)

    def _say(self, line: str) -> None:
        """One line of output, written around the bar (tqdm clears and redraws it)."""
        tqdm.write(line, file=self.stdout._out if hasattr(self.stdout, "_out") else sys.stdout)  # type: ignore[attr-defined]

    def _wait(self, queued: dict[str, str], options: dict[str, Any]) -> dict[str, str]:
        """Follow the queued documents (by polling their rows) until each is ready or failed."""
        outcomes: dict[str, str] = {}
        deadline = time.monotonic() + options["timeout"]
        with self._bar(len(queued), "file", options) as bar, logging_redirect_tqdm():
            while len(outcomes) < len(queued):
                rows = Document.objects.filter(pk__in=[pk for pk in queued if pk not in outcomes]).select_related(
                    "task"
                )
                done = float(len(outcomes))
                for document in rows:
                    if document.status in (Document.Status.READY, Document.Status.FAILED):
                        outcome = "ready" if document.status == Document.Status.READY else "failed"
                        outcomes[str(document.pk)] = outcome
                        error = ingestion_error(document.task) if outcome == "failed" else None
                        detail = (error or {}).get("message", "")
                        self._say(f"{queued[str(document.pk)]}: {outcome}{': ' + detail if detail else ''}")
                        done += 1
                    else:
                        done += (document.task.progress if document.task else 0) / 100
                for pk in set(queued) - set(outcomes) - {str(document.pk) for document in rows}:
                    outcomes[pk] = "failed"  # deleted meanwhile
                    self._say(f"{queued[pk]}: failed: the document was deleted")
                    done += 1
                bar.n = done
                bar.refresh()
                if len(outcomes) < len(queued):
                    if time.monotonic() > deadline:
                        raise CommandError(f"{len(queued) - len(outcomes)} document(s) still not done after --timeout.")
                    time.sleep(0.5)
        return outcomes

    def _one(
        self,
        path: Path,
        tenant: Tenant,
        owner: User,
        project: Project | None,
        *,
        queue: bool,
        bar: tqdm,
        number: int,
    ) -> tuple[str, Document | None]:
        try:
            with path.open("rb") as handle:
                upload = UploadedFile(handle, name=path.name, content_type="application/pdf", size=path.stat().st_size)
                document, duplicate = document_upload(
                    tenant=tenant, owner=owner, upload=upload, project=project, enqueue=queue
                )
        except DomainError as exc:
            return f"failed: {exc.code}: {exc.message}", None
        if duplicate:
            return self._duplicate(document, project), document
        if queue:
            return f"queued: {document.pk}", document

        return self._run(document, bar=bar, label=path.name, number=number), document

    def _run(self, document: Document, *, bar: tqdm, label: str, number: int) -> str:
        """Run the ingestion task in this process through Celery's API; the outcome line."""

        def progress(value: int, stage: str) -> None:
            bar.n = number + value / 100
            bar.set_postfix_str(f"{label}: {stage}")

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

    def _duplicate(self, document: Document, project: Project | None) -> str:
        """The same bytes are already in the tenant: add that document to ``project`` when it is in none."""
        where = f"already {document.status} as {document.pk}"
        if project is None or document.project_id == project.pk:
            held = document.project.name if document.project_id else None
            return f"duplicate: {where}" + (f" in project {held!r}" if held else "")
        if document.project_id is None:
            document_update(document=document, project=project)
            return f"duplicate: {where}; added to project {project.name!r}"
        return f"duplicate: {where} in project {document.project.name!r} (a document is in one project; not moved)"

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
