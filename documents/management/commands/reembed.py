"""``manage.py reembed <tenant> <embedder>``: move a tenant to another embedder (local, openai, hashing).

Every chunk is embedded again with the new embedder while the old vectors keep answering searches;
when all are done the tenant switches at once (see :mod:`documents.reembedding`). By default the work
is queued for the Celery workers and the task id printed (follow it in ``/api/v1/tasks/`` or the
admin); ``--now`` runs it here (through Celery's API, recorded on the task row the same way). ``--status`` shows the tenant's embedder and
its latest re-embedding instead.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.errors import DomainError
from documents.embeddings import PROVIDERS, tenant_embedder_name
from documents.reembedding import reembed_start
from documents.tasks import reembed_tenant
from tasks.models import Task
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Re-embed a tenant's chunks with another embedder, then switch its searches to it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="tenant slug or id")
        parser.add_argument("embedder", nargs="?", choices=PROVIDERS, help="the embedder to move to")
        parser.add_argument("--now", action="store_true", help="run here instead of on a worker")
        parser.add_argument("--status", action="store_true", help="show the embedder and the latest re-embedding")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = self._tenant(options["tenant"])
        if options["status"] or not options["embedder"]:
            self._status(tenant)
            return
        try:
            task = reembed_start(tenant=tenant, embedder=options["embedder"], enqueue=not options["now"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if not options["now"]:
            self.stdout.write(f"Queued: task {task.pk} re-embeds {tenant.slug} with {options['embedder']}.")
            return
        # Run the Celery task right here through Celery's own API: the row records it as a worker would.
        reembed_tenant.apply(kwargs={**task.payload, "task_row_id": str(task.pk)}, throw=False)
        task.refresh_from_db()
        if task.status != Task.Status.COMPLETED:
            raise CommandError(f"Re-embedding failed: {task.error.get('type')}: {task.error.get('message')}")
        result = task.result
        self.stdout.write(
            self.style.SUCCESS(
                f"{tenant.slug} now searches with {result['embedder']} ({result['model']}, {result['dimensions']} "
                f"dimensions): {result['embedded']} chunks embedded, {result['removed']} old vectors removed."
            )
        )

    def _tenant(self, value: str) -> Tenant:
        try:
            lookup = {"pk": uuid.UUID(value)}
        except ValueError:
            lookup = {"slug": value}
        tenant = Tenant.objects.filter(**lookup).first()
        if tenant is None:
            raise CommandError(f"No tenant {value!r}.")
        return tenant

    def _status(self, tenant: Tenant) -> None:
        self.stdout.write(f"{tenant.slug}: embedder {tenant_embedder_name(tenant)}")
        task = Task.objects.filter(tenant=tenant, kind=Task.Kind.REEMBEDDING).order_by("-created_at").first()
        if task is not None:
            self.stdout.write(f"  latest re-embedding: task {task.pk} {task.status} {task.progress}% {task.stage}")
