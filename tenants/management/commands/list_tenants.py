"""``manage.py list_tenants [--active|--inactive] [--json]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from tenants.management.base import OperatorCommand
from tenants.selectors import tenant_list


class Command(OperatorCommand):
    help = "List tenants with their status and number of users."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--active", action="store_true", help="Only active tenants.")
        group.add_argument("--inactive", action="store_true", help="Only deactivated tenants.")
        parser.add_argument("--json", action="store_true", help="One JSON array instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        is_active = True if options["active"] else (False if options["inactive"] else None)
        rows = [
            {
                "slug": t.slug,
                "name": t.name,
                "active": t.is_active,
                "users": t.user_count,
                "active_users": t.active_user_count,
                "id": str(t.pk),
                "created_at": t.created_at.isoformat(),
            }
            for t in tenant_list(is_active=is_active)
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            self.stdout.write("No tenants. Create one with: manage.py create_tenant <slug> --name <name>")
            return
        header = ("SLUG", "NAME", "ACTIVE", "USERS", "ID")
        table = [header] + [
            (r["slug"], r["name"], "yes" if r["active"] else "no", f"{r['active_users']}/{r['users']}", r["id"])
            for r in rows
        ]
        widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
        for row in table:
            self.stdout.write(
                "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
