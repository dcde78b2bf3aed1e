"""``manage.py task_watchdog``: fail the tasks stuck in processing without a heartbeat (error ``stalled``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.services import task_fail_stalled


class Command(BaseCommand):
    help = "Mark processing tasks without a heartbeat for TASK_STALL_TIMEOUT_SECONDS as failed (stalled)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=int,
            default=None,
            help=f"Seconds without a heartbeat (default: TASK_STALL_TIMEOUT_SECONDS = {settings.TASK_STALL_TIMEOUT_SECONDS}).",
        )

    def handle(self, *args: Any, timeout: int | None = None, **options: Any) -> None:
        if timeout is not None and timeout < 0:
            raise CommandError("--timeout must be zero or more seconds")
        failed = task_fail_stalled(timeout_seconds=timeout)
        for task in failed:
            self.stdout.write(f"stalled: {task.pk} {task.kind} {task.title!r}")
        self.stdout.write(self.style.SUCCESS(f"{len(failed)} stalled task(s) marked failed."))
