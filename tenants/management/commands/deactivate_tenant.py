"""``manage.py deactivate_tenant <slug-or-id> [--reactivate]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from tenants.management.base import OperatorCommand
from tenants.services import tenant_set_active


class Command(OperatorCommand):
    help = (
        "Deactivate a tenant: its API answers 403 tenant_inactive and its tokens stop working; its data "
        "is kept. --reactivate undoes it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="The tenant's slug or id.")
        parser.add_argument("--reactivate", action="store_true", help="Activate the tenant again instead.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = self.get_tenant(options["tenant"])
        active = options["reactivate"]
        changed = tenant_set_active(tenant=tenant, active=active)
        state = "active" if active else "inactive"
        if changed:
            self.stdout.write(self.style.SUCCESS(f"Tenant {tenant.slug!r} is now {state}."))
        else:
            self.stdout.write(f"Tenant {tenant.slug!r} was already {state}; nothing changed.")
