"""The demo tenant that ``make run`` makes sure exists, with an admin who can sign in at once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

DEMO_TENANT_SLUG = "demo"
DEMO_TENANT_NAME = "Demo"
DEMO_ADMIN_EMAIL = "admin@demo.local"


@dataclass(frozen=True)
class DemoAccount:
    """How to sign in to the demo tenant."""

    tenant_slug: str
    email: str
    password: str
    created: bool


@transaction.atomic
def demo_tenant_ensure(*, password: str | None, password_file: Path) -> DemoAccount:
    """Create the ``demo`` tenant and its admin when missing; make the admin's password known.

    The password is ``password`` when given (``DEMO_ADMIN_PASSWORD``), else the one kept in
    ``password_file`` (made once, readable by the owner only), so it stays the same across runs.
    The admin is reactivated and given that password if they were changed since.
    """
    from accounts.models import User
    from tenants.models import Tenant

    if not password:
        if password_file.exists():
            password = password_file.read_text().strip()
        if not password:
            password = secrets.token_urlsafe(12)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.touch(mode=0o600)
            password_file.write_text(password + "\n")

    from documents.embeddings import default_provider

    tenant, _ = Tenant.objects.get_or_create(
        slug=DEMO_TENANT_SLUG,
        defaults={
            "name": DEMO_TENANT_NAME,
            "settings": {"embedder": default_provider()},
        },  # pinned, as tenant_create does
    )
    if not tenant.is_active:
        tenant.is_active = True
        tenant.save(update_fields=["is_active"])
    user = User.objects.filter(tenant=tenant, email=DEMO_ADMIN_EMAIL).first()
    created = user is None
    if user is None:
        user = User.objects.create_user(
            DEMO_ADMIN_EMAIL, password, tenant=tenant, role=User.Role.ADMIN, full_name="Demo Admin", email_verified=True
        )
    elif not user.is_active or user.role != User.Role.ADMIN or not user.check_password(password):
        user.is_active = True
        user.role = User.Role.ADMIN
        user.set_password(password)
        user.save()
    return DemoAccount(tenant_slug=tenant.slug, email=user.email, password=password, created=created)
