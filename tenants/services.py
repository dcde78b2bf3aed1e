"""Writes about tenants: create (with a first admin), rename and change settings, (de)activate."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import serializers

from audit.services import audit_record
from config.errors import Conflict, ValidationFailed
from tenants.lookup import forget_tenants
from tenants.models import Tenant
from tenants.serializers import clean_tenant_settings

if TYPE_CHECKING:
    from accounts.models import User

# Lower-case letters, digits and inner hyphens, like a DNS label: safe in headers, URLs and logs.
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_tenant_slug(slug: str) -> str:
    """The slug, or ``ValidationFailed`` explaining what is wrong with it."""
    if not SLUG_RE.match(slug or ""):
        raise ValidationFailed(
            f"Invalid slug {slug!r}: use 1-63 lower-case letters, digits and inner hyphens (e.g. 'acme-corp').",
            details={"fields": {"slug": ["Use 1-63 lower-case letters, digits and inner hyphens."]}},
        )
    try:
        uuid.UUID(slug)
    except ValueError:
        return slug
    raise ValidationFailed(
        "A slug cannot look like a UUID (X-Tenant-ID would read it as an id).",
        details={"fields": {"slug": ["A slug cannot look like a UUID."]}},
    )


def _settings_or_error(changes: Any, current: dict[str, Any]) -> dict[str, Any]:
    try:
        return clean_tenant_settings(changes, current=current)
    except serializers.ValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        first_key, first = next(iter(detail.items()))
        message = first[0] if isinstance(first, list) and first else str(first)
        raise ValidationFailed(f"settings.{first_key}: {message}", details={"fields": {"settings": detail}}) from exc


@transaction.atomic
def tenant_create(
    *,
    slug: str,
    name: str,
    settings: dict[str, Any] | None = None,
    admin_email: str | None = None,
    admin_password: str | None = None,
    admin_full_name: str = "",
) -> tuple[Tenant, User | None]:
    """Create a tenant and, when ``admin_email`` is given, its first admin.

    The admin signs in with ``admin_password`` or, without one, with an e-mailed code. Raises
    ``ValidationFailed`` for a bad slug, name, settings, e-mail or weak password and ``Conflict`` when
    the slug is taken; nothing is created then.
    """
    from accounts.models import User
    from accounts.services import user_create

    slug = validate_tenant_slug((slug or "").strip())
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ValidationFailed(
            "The name must be 1-200 characters.", details={"fields": {"name": ["1-200 characters."]}}
        )
    if Tenant.objects.filter(slug=slug).exists():
        raise Conflict(f"A tenant with slug {slug!r} already exists.")
    cleaned = _settings_or_error(settings or {}, {})
    # A new tenant is pinned to the deployment's default embedder (local offline, openai with a
    # key): a later change of the default leaves its vectors usable; `manage.py reembed` moves it.
    from documents.embeddings import default_provider

    cleaned["embedder"] = default_provider()
    try:
        with transaction.atomic():
            tenant = Tenant.objects.create(slug=slug, name=name, settings=cleaned)
    except IntegrityError as exc:  # lost a race with another create of the same slug
        raise Conflict(f"A tenant with slug {slug!r} already exists.") from exc
    admin = None
    if admin_email:
        admin = user_create(
            tenant=tenant,
            email=admin_email,
            password=admin_password,
            role=User.Role.ADMIN,
            full_name=admin_full_name,
            email_verified=True,
        )
    return tenant, admin


@transaction.atomic
def tenant_update(*, tenant: Tenant, name: str | None = None, settings: dict[str, Any] | None = None) -> Tenant:
    """Rename ``tenant`` and/or merge ``settings`` into its settings (a ``None`` value resets a key).

    The merged settings are validated as a whole; on error nothing changes (``ValidationFailed``).
    """
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    fields = ["updated_at"]
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationFailed(
                "The name cannot be blank.", details={"fields": {"name": ["This field may not be blank."]}}
            )
        locked.name = name
        fields.append("name")
    before = {"name": locked.name, "settings": dict(locked.settings or {})}
    if settings is not None:
        locked.settings = _settings_or_error(settings, dict(locked.settings or {}))
        fields.append("settings")
    locked.save(update_fields=fields)
    changed = sorted(
        k
        for k in set(before["settings"]) | set(locked.settings or {})
        if before["settings"].get(k) != (locked.settings or {}).get(k)
    )
    if changed or before["name"] != locked.name:
        audit_record(
            action="tenant.settings_changed",
            tenant=locked,
            target=locked,
            details={
                "settings_changed": changed,
                **({"name": [before["name"], locked.name]} if before["name"] != locked.name else {}),
            },
        )
    return locked


@transaction.atomic
def tenant_set_active(*, tenant: Tenant, active: bool) -> bool:
    """Activate or deactivate ``tenant``; returns whether anything changed.

    A deactivated tenant's API answers 403 ``tenant_inactive`` and its tokens stop working; its data
    is kept, so reactivating restores everything.
    """
    changed = (
        Tenant.objects.filter(pk=tenant.pk)
        .exclude(is_active=active)
        .update(is_active=active, updated_at=timezone.now())
    )
    tenant.is_active = active
    forget_tenants()  # an update in SQL sends no post_save: the tenant middleware's memory (tenants.lookup)
    if changed:
        audit_record(action="tenant.activated" if active else "tenant.deactivated", tenant=tenant, target=tenant)
    return bool(changed)
