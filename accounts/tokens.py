"""Issuing, checking, rotating and revoking JWTs: the one place that knows what a token must carry.

Every token carries ``user_id``, ``tenant``, ``role``, ``tv`` (the user's ``token_version`` when it
was issued) and ``fam`` (a random id per sign-in, kept by every token rotated from it; a revoked one
is a :class:`~accounts.models.RevokedTokenFamily` row). A token is
honoured only while ``tv`` equals the user's current version and its family is not revoked, checked
on every request and every socket frame. So:

* a password change or reset, a deactivation, a role change and ``logout-all`` bump the version
  (:func:`user_revoke_tokens`): every token issued before is refused at once, and the user's open
  sockets are told to close (4401) through their channel group;
* ``logout`` revokes the token's family: that session's access token stops too;
* refresh rotates: the presented refresh token is blacklisted and a successor issued. Presenting it
  again within :data:`REFRESH_GRACE_SECONDS` (two tabs, a retry after a lost answer) returns the
  *same* successor: its ``jti``, ``iat`` and ``exp`` are derived from the rotated token and the
  moment of rotation, so it is rebuilt rather than stored. Presenting it later is reuse of a stolen
  copy: the whole family is revoked.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts.models import RevokedTokenFamily, User
from tenants.models import Tenant

logger = logging.getLogger(__name__)

REFRESH_GRACE_SECONDS = 30
CLOSE_EVENT = "auth.revoked"  # sent to the user's channel group; the chat consumer closes with 4401


class TokenRefused(Exception):
    """The token is not (or no longer) valid; ``reason`` is a short code for the logs and the error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- issuing ------------------------------------------------------------------------------------


def _claims(user: User, family_id: Any) -> dict[str, Any]:
    return {
        "tenant": str(user.tenant_id) if user.tenant_id else None,
        "role": user.role,
        "tv": user.token_version,
        "fam": str(family_id),
    }


def tokens_for_user(user: User) -> dict[str, str]:
    """A new sign-in: a fresh family and its first refresh/access pair."""
    refresh = RefreshToken.for_user(user)  # also records the OutstandingToken
    for key, value in _claims(user, uuid.uuid4()).items():
        refresh[key] = value
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _derived_jti(kind: str, parent_jti: str) -> str:
    key = str(settings.SIMPLE_JWT["SIGNING_KEY"]).encode()
    return hmac.new(key, f"{kind}|{parent_jti}".encode(), hashlib.sha256).hexdigest()[:32]


def _successor(user: User, parent: dict[str, Any], rotated_at: Any) -> dict[str, str]:
    """The pair that replaces refresh token ``parent``, the same whenever it is rebuilt for that rotation."""
    iat = int(rotated_at.timestamp())
    claims = {api_settings.USER_ID_CLAIM: str(user.pk), **_claims(user, parent["fam"])}
    refresh = {
        api_settings.TOKEN_TYPE_CLAIM: "refresh",
        "exp": iat + int(api_settings.REFRESH_TOKEN_LIFETIME.total_seconds()),
        "iat": iat,
        api_settings.JTI_CLAIM: _derived_jti("refresh", parent[api_settings.JTI_CLAIM]),
        **claims,
    }
    access = {
        api_settings.TOKEN_TYPE_CLAIM: "access",
        "exp": iat + int(api_settings.ACCESS_TOKEN_LIFETIME.total_seconds()),
        "iat": iat,
        api_settings.JTI_CLAIM: _derived_jti("access", parent[api_settings.JTI_CLAIM]),
        **claims,
    }
    raw_refresh = token_backend.encode(refresh)
    OutstandingToken.objects.get_or_create(
        jti=refresh[api_settings.JTI_CLAIM],
        defaults={
            "user": user,
            "token": raw_refresh,
            "created_at": rotated_at,
            "expires_at": datetime_from_epoch(refresh["exp"]),
        },
    )
    return {"access": token_backend.encode(access), "refresh": raw_refresh}


# --- checking -----------------------------------------------------------------------------------


def _decode(raw: str, token_type: str) -> dict[str, Any]:
    try:
        payload = token_backend.decode(raw, verify=True)  # signature, algorithm and expiry
    except TokenBackendError as exc:
        raise TokenRefused("token_not_valid") from exc
    if payload.get(api_settings.TOKEN_TYPE_CLAIM) != token_type:
        raise TokenRefused("token_not_valid")
    for claim in (api_settings.USER_ID_CLAIM, api_settings.JTI_CLAIM, "tv", "fam"):
        if payload.get(claim) in (None, ""):
            raise TokenRefused("token_not_valid")
    return payload


def _user_for(payload: dict[str, Any], *, lock: bool = False) -> User:
    """The token's user if the token is still honoured (version, family, activity, tenant): one query,
    which locks the user's row (``FOR UPDATE``) if ``lock``."""
    try:
        family = uuid.UUID(str(payload["fam"]))
        user_id = uuid.UUID(str(payload[api_settings.USER_ID_CLAIM]))
    except ValueError as exc:
        raise TokenRefused("token_not_valid") from exc
    user, family_revoked = _session_row(user_id=user_id, family=family, lock=lock)
    if user is None or not user.is_active:
        raise TokenRefused("user_inactive")
    if payload["tv"] != user.token_version or family_revoked:
        raise TokenRefused("token_revoked")
    if user.tenant is None or str(user.tenant_id) != str(payload.get("tenant")):
        raise TokenRefused("token_not_valid")
    if not user.tenant.is_active:
        raise TokenRefused("tenant_inactive")
    return user


@dataclass(frozen=True)
class AccessSession:
    """What a valid access token says about its session (kept by sockets to re-check each frame)."""

    user: User
    token_version: int
    family: str
    expires_at: float  # the token's ``exp`` (seconds since the epoch): a socket opened with it ends then


def access_session(raw: str) -> AccessSession:
    """The session of a valid, unrevoked access token; raises :class:`TokenRefused`."""
    payload = _decode(raw, "access")
    user = _user_for(payload)
    return AccessSession(
        user=user, token_version=int(payload["tv"]), family=str(payload["fam"]), expires_at=float(payload["exp"])
    )


def access_session_problem(*, user_id: Any, token_version: int, family: str) -> str | None:
    """Why a session checked earlier is no longer honoured (``token_revoked``, ``user_inactive``,
    ``tenant_inactive``), or None while it is. Sockets ask before each frame: one query."""
    return access_session_user(user_id=user_id, token_version=token_version, family=family)[1]


def access_session_user(*, user_id: Any, token_version: int, family: str) -> tuple[User | None, str | None]:
    """:func:`access_session_problem` and, while the session is honoured, the user with their tenant,
    fresh from the same query (a socket's question needs both)."""
    try:
        family_id = uuid.UUID(str(family))
    except ValueError:
        return None, "token_revoked"
    user, family_revoked = _session_row(user_id=user_id, family=family_id)
    if user is None or not user.is_active:
        return None, "user_inactive"
    if user.token_version != token_version or family_revoked:
        return None, "token_revoked"
    if user.tenant is None or not user.tenant.is_active:
        return None, "tenant_inactive"
    return user, None


def _session_row(*, user_id: Any, family: uuid.UUID, lock: bool = False) -> tuple[User | None, bool]:
    """The user (None if there is none) with their tenant, and whether ``family`` is revoked for
    them: one statement (:func:`_session_user_sql`), ``FOR UPDATE`` of the user's row if ``lock``.

    Written in SQL: every API request and socket frame runs it, and compiling the same query with
    the ORM (``select_related`` and an ``Exists``) cost about 1.5 ms of CPU, fifteen times the
    query's own."""
    sql, user_columns = _session_user_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql + (" FOR UPDATE OF u" if lock else ""), [family, user_id])
        row = cursor.fetchone()
    if row is None:
        return None, False
    user = _instance(User, row[:user_columns])
    tenant_row = row[user_columns:-1]
    user.tenant = _instance(Tenant, tenant_row) if tenant_row[0] is not None else None  # type: ignore[assignment]
    return user, bool(row[-1])


def _instance(model: Any, values: tuple[Any, ...]) -> Any:
    """A ``model`` instance from a row of its concrete fields' columns, converted as a queryset would (JSON...)."""
    fields, attnames, converters = _loading(model)
    converted = list(values)
    for index, field_converters in converters:
        value = converted[index]
        for converter in field_converters:
            value = converter(value, fields[index], connection)
        converted[index] = value
    return model.from_db(connection.alias, attnames, converted)


@functools.cache
def _loading(model: Any) -> tuple[list[Any], list[str], list[tuple[int, list[Any]]]]:
    """``model``'s concrete fields, their attribute names, and the converters of those that have any (the
    backend's and the field's own, as a queryset asks for them), looked up once per process: every request
    and socket frame loads a user and a tenant, and asking each field of the (thread-local) connection cost
    ~0.15 ms a time."""
    fields = list(model._meta.concrete_fields)
    converters = [
        (index, found)
        for index, field in enumerate(fields)
        if (found := connection.ops.get_db_converters(field) + field.get_db_converters(connection))
    ]
    return fields, [f.attname for f in fields], converters


@functools.cache
def _session_user_sql() -> tuple[str, int]:
    """The statement of :func:`access_session_user` (the user's and the tenant's concrete columns, whether
    the family is revoked) and how many of a row's columns are the user's."""
    users, tenants, families = User._meta, Tenant._meta, RevokedTokenFamily._meta
    user_fields, tenant_fields = users.concrete_fields, tenants.concrete_fields
    columns = [f'u."{f.column}"' for f in user_fields] + [f't."{f.column}"' for f in tenant_fields]
    sql = (
        f"SELECT {', '.join(columns)},"
        f' EXISTS (SELECT 1 FROM "{families.db_table}" f WHERE f."{families.pk.column}" = %s'
        f' AND f."{families.get_field("user").column}" = u."{users.pk.column}")'
        f' FROM "{users.db_table}" u LEFT JOIN "{tenants.db_table}" t'
        f' ON t."{tenants.pk.column}" = u."{users.get_field("tenant").column}"'
        f' WHERE u."{users.pk.column}" = %s'
    )
    return sql, len(user_fields)


def refresh_session_user(raw: str) -> User:
    """The user of refresh token ``raw`` while its sign-in is honoured, without rotating it.

    For pages that learn who asks from a refresh cookie (the web console). A token rotated less than
    :data:`REFRESH_GRACE_SECONDS` ago still counts (a page request sent while the refresh that
    replaced it was in flight); raises :class:`TokenRefused` otherwise.
    """
    payload = _decode(raw, "refresh")
    user = _user_for(payload)
    rotated_at = (
        BlacklistedToken.objects.filter(token__jti=payload[api_settings.JTI_CLAIM])
        .values_list("blacklisted_at", flat=True)
        .first()
    )
    if rotated_at is not None and timezone.now() - rotated_at > timedelta(seconds=REFRESH_GRACE_SECONDS):
        raise TokenRefused("token_revoked")
    return user


# --- rotating and revoking ------------------------------------------------------------------------


def tokens_rotate(*, raw: str, tenant_id: Any) -> dict[str, str]:
    """Trade refresh token ``raw`` (of ``tenant_id``) for its successor pair; see the module docstring.

    Concurrent refreshes of one token are serialised on the user's row, so they all see the one
    rotation and get the same successor.
    """
    payload = _decode(raw, "refresh")
    if str(payload.get("tenant")) != str(tenant_id):
        raise TokenRefused("token_not_valid")
    reuse = False
    with transaction.atomic():
        user = _user_for(payload, lock=True)
        outstanding = OutstandingToken.objects.filter(jti=payload[api_settings.JTI_CLAIM]).first()
        if outstanding is None:
            raise TokenRefused("token_not_valid")
        rotated = BlacklistedToken.objects.filter(token=outstanding).first()
        if rotated is None:
            rotated = BlacklistedToken.objects.create(token=outstanding)
            return _successor(user, payload, rotated.blacklisted_at)
        if timezone.now() - rotated.blacklisted_at <= timedelta(seconds=REFRESH_GRACE_SECONDS):
            return _successor(user, payload, rotated.blacklisted_at)
        reuse = True
        family_revoke(user=user, family_id=payload["fam"], reason="reuse")
    if reuse:
        logger.warning("refresh_token_reused", extra={"user_id": str(payload["user_id"]), "family": payload["fam"]})
    raise TokenRefused("token_revoked")


def tokens_logout(*, user: User, raw: str) -> None:
    """Log one session out: blacklist ``raw`` (one of ``user``'s refresh tokens) and revoke its family."""
    payload = _decode(raw, "refresh")
    if str(payload[api_settings.USER_ID_CLAIM]) != str(user.pk):
        raise TokenRefused("token_not_valid")
    with transaction.atomic():
        _user_for(payload, lock=True)  # refused when the version moved on or the sign-in already ended
        outstanding = OutstandingToken.objects.filter(jti=payload[api_settings.JTI_CLAIM]).first()
        if outstanding is not None:
            BlacklistedToken.objects.get_or_create(token=outstanding)
        family_revoke(user=user, family_id=payload["fam"], reason="logout")


def family_revoke(*, user: User, family_id: Any, reason: str) -> None:
    """Refuse every token of one sign-in from now on, and close its sockets."""
    RevokedTokenFamily.objects.get_or_create(pk=family_id, defaults={"user": user, "reason": reason})
    close_user_sockets(user.pk, family=str(family_id))


# How long past the refresh lifetime a revoked family's row is kept: the web processes' clocks may
# disagree by a little, and the row must outlive every token of the family on all of them.
REVOKED_FAMILY_MARGIN = timedelta(hours=1)


def revoked_families_purge() -> int:
    """Delete the revoked-family rows no token can need any more; returns how many (daily, from beat).

    A revoked family is never rotated again (rotation and revocation are serialised on the user's
    row, and rotation refuses a revoked family), so its newest token was issued at the latest when it
    was revoked and has expired one refresh lifetime later (access tokens sooner). Rows older than
    that, plus the JWT leeway and :data:`REVOKED_FAMILY_MARGIN`, go.
    """
    cutoff = timezone.now() - (api_settings.REFRESH_TOKEN_LIFETIME + token_backend.get_leeway() + REVOKED_FAMILY_MARGIN)
    deleted, _ = RevokedTokenFamily.objects.filter(revoked_at__lt=cutoff).delete()
    return deleted


def expired_refresh_tokens_purge() -> int:
    """Delete the refresh tokens (and their blacklist rows) expired for longer than the leeway and
    :data:`REVOKED_FAMILY_MARGIN`; returns how many tokens (daily, from beat).

    simplejwt records every refresh token issued (``OutstandingToken``) and every rotated or logged-out
    one (``BlacklistedToken``) and leaves them forever (its ``flushexpiredtokens`` command is not run by
    anything). A token past its expiry and the leeway is refused by its signature check before either
    table is read, so its rows decide nothing any more.
    """
    cutoff = timezone.now() - (token_backend.get_leeway() + REVOKED_FAMILY_MARGIN)
    return OutstandingToken.objects.filter(expires_at__lt=cutoff).delete()[1].get(OutstandingToken._meta.label, 0)


def user_revoke_tokens(*, user: User) -> int:
    """Refuse every token ``user`` holds (bump the version), blacklist their refresh tokens, close their sockets.

    Returns how many refresh tokens were blacklisted. ``user.token_version`` is refreshed in place.
    """
    User.objects.filter(pk=user.pk).update(token_version=F("token_version") + 1)
    user.token_version = User.objects.values_list("token_version", flat=True).get(pk=user.pk)
    outstanding = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    created = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=t) for t in outstanding], ignore_conflicts=True
    )
    close_user_sockets(user.pk)
    return len(created)


def close_user_sockets(user_id: Any, family: str | None = None) -> None:
    """After commit, tell the user's sockets (those of ``family``, or all) to close with 4401.

    An API key's sockets are those of its service account (:func:`integrations.services.api_key_revoke`)."""

    def send() -> None:
        from channels.layers import get_channel_layer

        from tasks.events import user_group

        try:
            layer = get_channel_layer()
            if layer is not None:
                async_to_sync(layer.group_send)(user_group(user_id), {"type": CLOSE_EVENT, "family": family})
        except Exception:  # the per-frame check closes them anyway
            logger.exception("revoked_socket_close_failed")

    transaction.on_commit(send)
