"""Writes about API keys (and, below, webhooks): creation with its service account, revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.tokens import close_user_sockets
from audit.services import audit_record
from config.errors import Conflict, ValidationFailed
from integrations import netguard
from integrations.keys import generate_key
from integrations.models import APIKey, Scope, WebhookDelivery, WebhookEndpoint, WebhookEvent
from integrations.webhooks import enqueue_deliveries, new_secret, webhook_emit
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


def _clean_key(*, tenant: Tenant, name: str, scopes: list[str], expires_at: datetime | None) -> tuple[str, list[str]]:
    """The key's name and canonical scopes, or ``ValidationFailed`` / ``Conflict`` (see :func:`api_key_create`)."""
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
    return name, scopes


def _service_account(*, tenant: Tenant, prefix: str, name: str, scopes: list[str]) -> User:
    """The user a key acts as: a service account with the role its scopes need."""
    return User.objects.create_user(
        f"key-{prefix}@{SERVICE_EMAIL_DOMAIN}",
        None,  # unusable password: the account cannot sign in (and sign-in ignores service accounts)
        tenant=tenant,
        role=role_for_scopes(scopes),
        full_name=f"API key: {name}"[:200],
        is_service_account=True,
    )


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
    name, scopes = _clean_key(tenant=tenant, name=name, scopes=scopes, expires_at=expires_at)
    raw, prefix, digest = generate_key()
    user = _service_account(tenant=tenant, prefix=prefix, name=name, scopes=scopes)
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
    webhook_emit(
        tenant=tenant,
        event_type=WebhookEvent.API_KEY_CREATED,
        data={"api_key_id": str(key.pk), "name": key.name, "prefix": key.prefix, "scopes": scopes},
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
        close_user_sockets(key.user_id)  # the key's open sockets close with 4401 once this commits
    return key


# --- webhooks --------------------------------------------------------------------------------


def _checked_url(url: str) -> str:
    """``url`` if it may be called now (resolved once here too), else a 400 on ``url``."""
    try:
        netguard.check_url(url)
    except netguard.UnsafeURL as exc:
        raise ValidationFailed(f"url: {exc}", details={"fields": {"url": [str(exc)]}, "reason": exc.code}) from exc
    return url.strip()


def _clean_events(events: list[str]) -> list[str]:
    if not events:
        raise ValidationFailed("events: at least one event is required.", details={"fields": {"events": ["Required."]}})
    unknown = sorted(set(events) - set(WebhookEvent.values))
    if unknown:
        raise ValidationFailed(
            f"events: unknown event {unknown[0]!r}.",
            details={"fields": {"events": [f"Unknown event {e!r}." for e in unknown]}, "allowed": WebhookEvent.values},
        )
    return [e for e in WebhookEvent.values if e in set(events)]


@transaction.atomic
def webhook_endpoint_create(
    *, tenant: Tenant, created_by: Any | None, url: str, events: list[str], description: str = ""
) -> WebhookEndpoint:
    """Register an endpoint (its URL checked against SSRF rules now and at every delivery)."""
    endpoint = WebhookEndpoint.objects.create(
        tenant=tenant,
        url=_checked_url(url),
        events=_clean_events(events),
        description=description.strip(),
        secret=new_secret(),
        created_by=created_by if getattr(created_by, "pk", None) else None,
    )
    audit_record(action="webhook.created", tenant=tenant, target=endpoint, details={"events": endpoint.events})
    return endpoint


@transaction.atomic
def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **changes: Any) -> WebhookEndpoint:
    """Change the URL, events, description or activity; re-enabling clears the failure run."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    fields = ["updated_at"]
    if changes.get("url") is not None:
        endpoint.url = _checked_url(changes["url"])
        fields.append("url")
    if changes.get("events") is not None:
        endpoint.events = _clean_events(changes["events"])
        fields.append("events")
    if changes.get("description") is not None:
        endpoint.description = changes["description"].strip()
        fields.append("description")
    if changes.get("is_active") is not None and changes["is_active"] != endpoint.is_active:
        endpoint.is_active = changes["is_active"]
        if endpoint.is_active:
            endpoint.consecutive_failures, endpoint.disabled_at, endpoint.disabled_reason = 0, None, ""
        else:
            endpoint.disabled_at, endpoint.disabled_reason = timezone.now(), "Disabled by an admin."
        fields += ["is_active", "consecutive_failures", "disabled_at", "disabled_reason"]
    endpoint.save(update_fields=fields)
    audit_record(
        action="webhook.updated",
        tenant=endpoint.tenant,
        target=endpoint,
        details={"changed": sorted(f for f in fields if f != "updated_at")},
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new signing secret, effective for the next attempt (the old one stops at once)."""
    endpoint.secret = new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    audit_record(action="webhook.secret_rotated", tenant=endpoint.tenant, target=endpoint)
    return endpoint


@transaction.atomic
def webhook_secrets_reencrypt() -> int:
    """Encrypt every endpoint's secret again under the first of ``WEBHOOK_SECRET_KEYS``; returns how many.

    The second step of a key rotation (:mod:`integrations.encryption`): reading decrypts with any
    key, writing encrypts with the first. Rows are locked so a concurrent rotation of one endpoint's
    secret is not overwritten with the old value.
    """
    count = 0
    for endpoint in WebhookEndpoint.objects.select_for_update().only("id", "secret").order_by("pk"):
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=endpoint.secret)
        count += 1
    return count


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint and its delivery records."""
    audit_record(action="webhook.deleted", tenant=endpoint.tenant, target=endpoint)
    endpoint.delete()


@transaction.atomic
def webhook_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again: a new row with the same message id and payload, queued after commit."""
    if not delivery.endpoint.is_active:
        raise Conflict("The endpoint is disabled; enable it first.", code="endpoint_disabled")
    again = WebhookDelivery.objects.create(
        tenant_id=delivery.tenant_id,
        endpoint=delivery.endpoint,
        message_id=delivery.message_id,
        event_type=delivery.event_type,
        payload=delivery.payload,
        redelivery_of=delivery,
    )
    audit_record(
        action="webhook.redelivered",
        tenant=delivery.endpoint.tenant,
        target=delivery.endpoint,
        details={"delivery_id": str(delivery.pk), "new_delivery_id": str(again.pk)},
    )
    transaction.on_commit(lambda: enqueue_deliveries([str(again.pk)]))
    return again
