"""Writes about users and sign-in: codes, passwords, tokens, profile, and tenant admins' user management.

Views call these; they hold the rules:

* request-code and password/reset behave the same whether or not the address has an account;
* a code is checked before anything about the account is revealed;
* login has one error for an unknown e-mail, a wrong password and an inactive account;
* refresh rotates (the presented token is blacklisted, single use) and re-reads the user, so a new
  role or a deactivation takes effect at the next refresh;
* a password change or reset, and a deactivation, blacklist every outstanding refresh token of the
  user (access tokens are short-lived and re-checked against the user on every request);
* the first code sign-in to an unverified account (one registered without proof of the mailbox)
  ends the registrant's password and sessions;
* a tenant always keeps at least one active admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.authentication import tokens_for_user
from accounts.codes import CodePurpose, code_consume, code_issue
from accounts.emails import deliver_in_background, send_code_email, send_invitation_email
from accounts.exceptions import InvalidCredentials, InvalidToken, SignupClosed, invalid_code
from accounts.models import User
from accounts.selectors import normalize_email, tenant_active_admins, user_get_by_email
from config.errors import Conflict, ValidationFailed
from tenants.models import Tenant
from tenants.selectors import tenant_signup_allowed

# --- helpers ---------------------------------------------------------------------------------


def _clean_email(email: str) -> str:
    email = normalize_email(email)
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ValidationFailed(
            "email: Enter a valid email address.", details={"fields": {"email": ["Enter a valid email address."]}}
        ) from exc
    return email


def _check_password_strength(password: str, user: User, *, field: str = "password") -> None:
    """Django's password validators, as a 400 ``validation_error`` on ``field``."""
    try:
        validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise ValidationFailed(f"{field}: {exc.messages[0]}", details={"fields": {field: list(exc.messages)}}) from exc


def user_revoke_tokens(*, user: User) -> int:
    """Blacklist every outstanding, unexpired refresh token of ``user``; returns how many."""
    outstanding = OutstandingToken.objects.filter(
        user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
    )
    created = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=t) for t in outstanding], ignore_conflicts=True
    )
    return len(created)


# --- accounts --------------------------------------------------------------------------------


@transaction.atomic
def user_create(
    *,
    tenant: Tenant,
    email: str,
    password: str | None = None,
    role: str = User.Role.MEMBER,
    full_name: str = "",
    email_verified: bool = False,
) -> User:
    """Create a user of ``tenant``. Without a password the user signs in with e-mailed codes.

    Raises ``ValidationFailed`` (bad e-mail, role or weak password) or ``Conflict`` (e-mail taken).
    """
    email = _clean_email(email)
    if role not in User.Role.values:
        raise ValidationFailed(f"role: {role!r} is not a role.", details={"fields": {"role": ["Not a valid role."]}})
    if user_get_by_email(tenant=tenant, email=email) is not None:
        raise Conflict("An account with this email already exists.")
    candidate = User(tenant=tenant, email=email, full_name=full_name, role=role)
    if password is not None:
        _check_password_strength(password, candidate)
    try:
        with transaction.atomic():
            return User.objects.create_user(
                email, password, tenant=tenant, role=role, full_name=full_name, email_verified=email_verified
            )
    except IntegrityError as exc:  # a concurrent sign-up of the same address
        raise Conflict("An account with this email already exists.") from exc


def user_register(*, tenant: Tenant, email: str, password: str, full_name: str = "") -> User:
    """Self-service sign-up with a password, where the tenant allows sign-up (403 otherwise)."""
    if not tenant_signup_allowed(tenant=tenant):
        raise SignupClosed()
    return user_create(tenant=tenant, email=email, password=password, full_name=full_name)


def user_update_profile(*, user: User, full_name: str | None = None) -> User:
    """What people may change about themselves: their name."""
    if full_name is not None:
        user.full_name = full_name.strip()
        user.save(update_fields=["full_name", "updated_at"])
    return user


# --- e-mail codes ----------------------------------------------------------------------------


def auth_request_code(*, tenant: Tenant, email: str) -> None:
    """E-mail a sign-in code when ``email`` may sign in: an active user, or anyone where sign-up is open.

    Returns nothing either way: the caller answers the same whether or not a code was sent.
    """
    email = normalize_email(email)
    user = user_get_by_email(tenant=tenant, email=email)
    if user is None and not tenant_signup_allowed(tenant=tenant):
        return
    if user is not None and not user.is_active:
        return
    code = code_issue(tenant=tenant, email=email, purpose=CodePurpose.SIGN_IN)
    deliver_in_background(lambda: send_code_email(tenant=tenant, email=email, code=code, purpose=CodePurpose.SIGN_IN))


def auth_verify_code(*, tenant: Tenant, email: str, code: str) -> tuple[User, bool]:
    """Sign in with an e-mailed code: ``(user, created)``; the e-mail counts as verified.

    Creates the user (a member without a password) on first sign-in where the tenant allows sign-up.
    Any failure is the same 400 ``validation_error`` on ``code``.
    """
    email = normalize_email(email)
    # Not inside a transaction: with the database cache a rollback would undo the attempt count.
    if not code_consume(tenant=tenant, email=email, purpose=CodePurpose.SIGN_IN, code=code):
        raise invalid_code()
    with transaction.atomic():
        return _sign_in_with_verified_email(tenant=tenant, email=email)


def _sign_in_with_verified_email(*, tenant: Tenant, email: str) -> tuple[User, bool]:
    user = user_get_by_email(tenant=tenant, email=email)
    created = False
    if user is None:
        if not tenant_signup_allowed(tenant=tenant):  # sign-up closed after the code was sent
            raise invalid_code()
        user = user_create(tenant=tenant, email=email, email_verified=True)
        created = True
    elif not user.is_active:
        raise invalid_code()
    elif not user.email_verified:
        # Nothing proved this mailbox before: whoever registered the address may not own it. Its
        # owner takes the account over alone (no pre-hijacking): that password and its sessions end.
        user.email_verified = True
        fields = ["email_verified", "updated_at"]
        if user.has_usable_password():
            user.set_unusable_password()
            fields.append("password")
        user.save(update_fields=fields)
        user_revoke_tokens(user=user)
    update_last_login(None, user)
    return user, created


# --- passwords -------------------------------------------------------------------------------


def auth_login(*, tenant: Tenant, email: str, password: str, request: Any = None) -> User:
    """The active user of ``tenant`` with this e-mail and password, or ``InvalidCredentials`` (401)."""
    user = authenticate(request, email=normalize_email(email), password=password, tenant=tenant)
    if user is None:
        raise InvalidCredentials()
    update_last_login(None, user)
    return user


@transaction.atomic
def user_change_password(*, user: User, old_password: str, new_password: str) -> dict[str, str]:
    """Change the password (the old one is required) and end every other session.

    Every outstanding refresh token of the user is blacklisted; the returned fresh pair keeps the
    current session going.
    """
    if not user.check_password(old_password):
        raise ValidationFailed(
            "old_password: The current password is not correct.",
            details={"fields": {"old_password": ["The current password is not correct."]}},
        )
    _check_password_strength(new_password, user, field="new_password")
    user.set_password(new_password)
    user.save(update_fields=["password", "updated_at"])
    user_revoke_tokens(user=user)
    return tokens_for_user(user)


def password_reset_request(*, tenant: Tenant, email: str) -> None:
    """E-mail a reset code to an active user with this address; silently nothing otherwise."""
    email = normalize_email(email)
    user = user_get_by_email(tenant=tenant, email=email)
    if user is None or not user.is_active:
        return
    code = code_issue(tenant=tenant, email=email, purpose=CodePurpose.PASSWORD_RESET)
    deliver_in_background(
        lambda: send_code_email(tenant=tenant, email=email, code=code, purpose=CodePurpose.PASSWORD_RESET)
    )


def password_reset_confirm(*, tenant: Tenant, email: str, code: str, new_password: str) -> User:
    """Set a new password with an e-mailed reset code; every session of the user ends.

    The new password is checked first, so a weak one does not use up the code.
    """
    email = normalize_email(email)
    user = user_get_by_email(tenant=tenant, email=email)
    _check_password_strength(new_password, user or User(tenant=tenant, email=email), field="new_password")
    # Outside the transaction, like auth_verify_code: the attempt count must survive a failure.
    if not code_consume(tenant=tenant, email=email, purpose=CodePurpose.PASSWORD_RESET, code=code):
        raise invalid_code()
    if user is None or not user.is_active:
        raise invalid_code()
    with transaction.atomic():
        user.set_password(new_password)
        user.email_verified = True  # they read the code in that mailbox
        user.save(update_fields=["password", "email_verified", "updated_at"])
        user_revoke_tokens(user=user)
    return user


# --- tokens ----------------------------------------------------------------------------------


def _parse_refresh(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)  # signature, expiry, type and blacklist
    except TokenError as exc:
        raise InvalidToken() from exc


@transaction.atomic
def tokens_refresh(*, tenant: Tenant, refresh: str) -> dict[str, str]:
    """Rotate a refresh token: blacklist it and return a new pair with fresh claims.

    The token must belong to ``tenant`` and to an active user; each refresh token works once.
    """
    token = _parse_refresh(refresh)
    user = User.objects.select_related("tenant").filter(pk=token.get("user_id")).first()
    if user is None or not user.is_active or user.tenant_id != tenant.pk or str(token.get("tenant")) != str(tenant.pk):
        raise InvalidToken()
    _, created = token.blacklist()
    if not created:  # a concurrent refresh with the same token got there first
        raise InvalidToken()
    return tokens_for_user(user)


def tokens_revoke(*, user: User, refresh: str) -> None:
    """Log out: blacklist ``refresh``, which must be one of ``user``'s tokens."""
    token = _parse_refresh(refresh)
    if str(token.get("user_id")) != str(user.pk):
        raise InvalidToken()
    token.blacklist()


# --- tenant admins manage users --------------------------------------------------------------


def user_invite(
    *, tenant: Tenant, invited_by: User | None, email: str, role: str = User.Role.MEMBER, full_name: str = ""
) -> User:
    """Add a user to ``tenant`` (no password: they sign in with a code) and e-mail them an invitation."""
    user = user_create(tenant=tenant, email=email, role=role, full_name=full_name)
    inviter = (invited_by.full_name or invited_by.email) if invited_by else ""
    send_invitation_email(tenant=tenant, email=user.email, role=user.get_role_display(), invited_by=inviter)
    return user


LAST_ADMIN_MESSAGE = "This is the tenant's last active admin: make someone else an admin first."


@transaction.atomic
def user_check_keeps_an_admin(
    *, tenant: Tenant, user: User, role: str | None = None, is_active: bool | None = None
) -> User:
    """Refuse (409 ``Conflict``) a change of ``user``'s role/activity that leaves ``tenant`` without an active admin.

    ``None`` means unchanged. Locks the tenant row and the user's: call it in the transaction that
    saves the change, so two admins demoting each other at once cannot both succeed. Returns the
    user as stored (locked, before the change).
    """
    Tenant.objects.select_for_update().filter(pk=tenant.pk).first()
    current = User.objects.select_for_update().get(pk=user.pk, tenant=tenant)
    was_admin = current.role == User.Role.ADMIN and current.is_active
    stays_admin = (role or current.role) == User.Role.ADMIN and (current.is_active if is_active is None else is_active)
    if was_admin and not stays_admin and not tenant_active_admins(tenant=tenant).exclude(pk=current.pk).exists():
        raise Conflict(LAST_ADMIN_MESSAGE)
    return current


@transaction.atomic
def user_update(
    *, tenant: Tenant, user: User, role: str | None = None, is_active: bool | None = None, full_name: str | None = None
) -> User:
    """Change a user's role, activity or name; refuses (409) to leave ``tenant`` without an active admin.

    A deactivated user's refresh tokens are blacklisted; their access tokens stop at the next request.
    """
    if role is not None and role not in User.Role.values:
        raise ValidationFailed(f"role: {role!r} is not a role.", details={"fields": {"role": ["Not a valid role."]}})
    user = user_check_keeps_an_admin(tenant=tenant, user=user, role=role, is_active=is_active)
    fields = ["updated_at"]
    if role is not None:
        user.role = role
        fields.append("role")
    if is_active is not None:
        user.is_active = is_active
        fields.append("is_active")
    if full_name is not None:
        user.full_name = full_name.strip()
        fields.append("full_name")
    user.save(update_fields=fields)
    if is_active is False:
        user_revoke_tokens(user=user)
    return user


def user_deactivate(*, tenant: Tenant, user: User) -> User:
    """Deactivate a user (their data stays); see :func:`user_update`."""
    return user_update(tenant=tenant, user=user, is_active=False)
