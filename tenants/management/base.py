"""Shared behaviour of the operators' tenant commands: bad input is a message and exit code 1.

Django already turns a ``CommandError`` into "CommandError: ..." on stderr and its exit code (1);
here domain errors become ``CommandError`` too, and argparse usage errors (a missing ``--name``, an
unknown option) exit with 1 instead of argparse's 2, so scripts see one code for "bad input".
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.errors import DomainError
from tenants.models import Tenant
from tenants.selectors import tenant_get


class OperatorCommand(BaseCommand):
    """Base of the tenant commands."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_exit = parser.exit

        def exit_one_on_usage_error(status: int = 0, message: str | None = None) -> NoReturn:
            argparse_exit(1 if status == 2 else status, message)

        parser.exit = exit_one_on_usage_error  # type: ignore[method-assign]
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except DomainError as exc:
            raise CommandError(exc.message) from exc

    def get_tenant(self, identifier: str) -> Tenant:
        tenant = tenant_get(identifier=identifier)
        if tenant is None:
            raise CommandError(f"No tenant matches {identifier!r} (give its slug or id; see list_tenants).")
        return tenant
