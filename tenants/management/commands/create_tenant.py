"""``manage.py create_tenant <slug> --name ... [--admin-email ...] [--admin-password ...]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from tenants.management.base import OperatorCommand
from tenants.selectors import tenant_get
from tenants.services import tenant_create


class Command(OperatorCommand):
    help = (
        "Create a tenant and, optionally, its first admin. Without --admin-password the admin signs in "
        "with an e-mailed code. Exit code 1, with a message, on bad input or a taken slug."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "slug", help="Lower-case letters, digits and inner hyphens; clients send it as X-Tenant-ID."
        )
        parser.add_argument("--name", required=True, help="Display name of the organisation.")
        parser.add_argument("--admin-email", help="Create the tenant's first admin with this e-mail.")
        parser.add_argument(
            "--admin-password",
            help="The admin's password (checked by the password validators). "
            "Beware: command lines are visible to other local users; omit it to use e-mail codes.",
        )
        parser.add_argument("--admin-name", default="", help="The admin's full name.")
        parser.add_argument(
            "--allow-signup",
            action="store_true",
            help="Let unknown e-mail addresses create accounts (settings.signup_allowed).",
        )
        parser.add_argument(
            "--tenant-settings",
            dest="tenant_settings",
            default=None,
            help='Tenant settings as a JSON object, e.g. \'{"answer_language": "de"}\'.',
        )
        parser.add_argument(
            "--exists-ok", action="store_true", help="If the slug exists already, say so and exit 0 instead of failing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug = options["slug"].strip()
        if options["exists_ok"]:
            existing = tenant_get(identifier=slug)
            if existing is not None and existing.slug == slug:
                self.stdout.write(f"Tenant {slug!r} already exists (id {existing.pk}); nothing to do.")
                return
        tenant_settings: dict[str, Any] = {}
        if options["tenant_settings"]:
            try:
                tenant_settings = json.loads(options["tenant_settings"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--tenant-settings is not valid JSON: {exc}") from exc
            if not isinstance(tenant_settings, dict):
                raise CommandError("--tenant-settings must be a JSON object.")
        if options["allow_signup"]:
            tenant_settings["signup_allowed"] = True
        if options["admin_password"] and not options["admin_email"]:
            raise CommandError("--admin-password needs --admin-email.")

        tenant, admin = tenant_create(
            slug=slug,
            name=options["name"],
            settings=tenant_settings,
            admin_email=options["admin_email"],
            admin_password=options["admin_password"],
            admin_full_name=options["admin_name"],
        )
        self.stdout.write(self.style.SUCCESS(f"Created tenant {tenant.slug!r} ({tenant.name}), id {tenant.pk}."))
        if admin is not None:
            how = "their password" if options["admin_password"] else "an e-mailed code (POST /api/v1/auth/request-code)"
            self.stdout.write(f"Admin {admin.email} signs in with {how}, sending X-Tenant-ID: {tenant.slug}.")
