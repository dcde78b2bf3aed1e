"""``manage.py init_deployment``: the first tenant, its admin and an operator, from environment variables.

For one-shot start-up steps (the compose ``init`` service): passwords come from the environment,
not the command line (which other local users can read), and a second run changes nothing, so the
step can run on every ``docker compose up``.

=================================== ===========================================================
``DOCUMIND_INIT_TENANT``             slug of the first tenant (nothing is created without it)
``DOCUMIND_INIT_TENANT_NAME``        its display name (default: the slug)
``DOCUMIND_INIT_ADMIN_EMAIL``        its first admin
``DOCUMIND_INIT_ADMIN_PASSWORD``     the admin's password (without it: e-mailed codes)
``DOCUMIND_INIT_OPERATOR_EMAIL``     a staff superuser for ``/admin/`` (no tenant)
``DOCUMIND_INIT_OPERATOR_PASSWORD``  the operator's password (required with the e-mail)
=================================== ===========================================================
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from accounts.models import User
from tenants.management.base import OperatorCommand
from tenants.selectors import tenant_get
from tenants.services import tenant_create


def _env(name: str) -> str:
    return os.environ.get(f"DOCUMIND_INIT_{name}", "").strip()


class Command(OperatorCommand):
    help = "Create the first tenant, its admin and an operator from DOCUMIND_INIT_* variables; safe to re-run."

    def handle(self, *args: Any, **options: Any) -> None:
        slug, operator = _env("TENANT"), _env("OPERATOR_EMAIL").lower()
        if not slug and not operator:
            self.stdout.write("No DOCUMIND_INIT_TENANT nor DOCUMIND_INIT_OPERATOR_EMAIL: nothing to do.")
            return
        if slug:
            self._tenant(slug)
        if operator:
            self._operator(operator, _env("OPERATOR_PASSWORD"))

    def _tenant(self, slug: str) -> None:
        existing = tenant_get(identifier=slug)
        if existing is not None:
            self.stdout.write(f"Tenant {existing.slug!r} exists (id {existing.pk}); left as it is.")
            return
        tenant, admin = tenant_create(
            slug=slug,
            name=_env("TENANT_NAME") or slug,
            admin_email=_env("ADMIN_EMAIL") or None,
            admin_password=_env("ADMIN_PASSWORD") or None,
        )
        self.stdout.write(self.style.SUCCESS(f"Created tenant {tenant.slug!r}, id {tenant.pk}."))
        if admin is not None:
            self.stdout.write(f"Its admin is {admin.email} (X-Tenant-ID: {tenant.slug}).")

    def _operator(self, email: str, password: str) -> None:
        if User.objects.filter(email__iexact=email, tenant__isnull=True).exists():
            self.stdout.write(f"Operator {email} exists; left as it is.")
            return
        if not password:
            raise CommandError("DOCUMIND_INIT_OPERATOR_EMAIL needs DOCUMIND_INIT_OPERATOR_PASSWORD.")
        try:
            validate_password(password, User(email=email))
        except ValidationError as exc:
            raise CommandError("DOCUMIND_INIT_OPERATOR_PASSWORD: " + " ".join(exc.messages)) from exc
        with transaction.atomic():
            User.objects.create_superuser(email, password)
        self.stdout.write(self.style.SUCCESS(f"Created operator {email} (staff, for /admin/)."))
