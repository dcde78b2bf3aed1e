"""Writes about API keys (and, below, webhooks): creation with its service account, revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from audit.services import audit_record
from config.errors import Conflict, ValidationFailed
from integrations.keys import generate_key
from integrations.models import APIKey, Scope
from tenants.models import Tenant

SERVICE_EMAIL_DOMAIN = "api-keys.invalid"  # RFC 2606: never delivers, never collides with a person


def role_for_scopes(scopes: list[str]) -> str:
    """The service account's role: admin for ``admin``, member for ``documents:write``, else viewer."""
    if Scope.ADMIN in scopes:
        return User.Role.ADMIN
    if Scope.DOCUMENTS_WRITE in scopes:
        return User.Role.MEMBER
    return User.Role.VIEWER


def _clean_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise ValidationFailed("scopes: at least one scope is required.", details={"fields": {"scopes": ["Required."]}})
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise ValidationFailed(
            f"scopes: unknown scope {unknown[0]!r}.",
            details={"fields": {"scopes": [f"Unknown scope {s!r}." for s in unknown]}, "allowed": Scope.values},
        )
    return [s for s in Scope.values if s in set(scopes)]  # canonical order, no duplicates


@transaction.atomic
def api_key_create(
    *,
    tenant: Tenant,
    created_by: Any | None,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
    daily_token_quota: int | None = None,
) -> tuple[APIKey, str]:
    """Create a key and its service-account user; returns the key and its secret (shown once).

    Raises ``ValidationFailed`` (no or unknown scopes, an expiry in the past, an empty name) or
    ``Conflict`` (the tenant already has a key with this name).
    """
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("name: a name is required.", details={"fields": {"name": ["Required."]}})
    scopes = _clean_scopes(scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed(
            "expires_at: must be in the future.", details={"fields": {"expires_at": ["Must be in the future."]}}
        )
    if APIKey.objects.for_tenant(tenant).filter(name=name).exists():
        raise Conflict("An API key with this name already exists.")
    raw, prefix, digest = generate_key()
    user = User.objects.create_user(
        f"key-{prefix}@{SERVICE_EMAIL_DOMAIN}",
        None,  # unusable password: the account cannot sign in (and sign-in ignores service accounts)
        tenant=tenant,
        role=role_for_scopes(scopes),
        full_name=f"API key: {name}"[:200],
        is_service_account=True,
    )
    try:
        with transaction.atomic():
            key = APIKey.objects.create(
                tenant=tenant,
                name=name,
                prefix=prefix,
                secret_hash=digest,
                scopes=scopes,
                user=user,
                created_by=created_by if getattr(created_by, "pk", None) else None,
                expires_at=expires_at,
                rate_limit_per_minute=rate_limit_per_minute,
                daily_token_quota=daily_token_quota,
            )
    except IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict("An API key with this name already exists.") from exc
    audit_record(
        action="api_key.created",
        tenant=tenant,
        target=key,
        details={"scopes": scopes, "prefix": prefix, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return key, raw


@transaction.atomic
def api_key_revoke(*, key: APIKey) -> APIKey:
    """Revoke ``key`` at once: it and its service account stop working (idempotent)."""
    key = APIKey.objects.select_for_update().select_related("user").get(pk=key.pk)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        User.objects.filter(pk=key.user_id).update(is_active=False)
        audit_record(action="api_key.revoked", tenant=key.tenant, target=key, details={"prefix": key.prefix})
    return key
