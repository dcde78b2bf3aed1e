"""Writes about users and sign-in: codes, passwords, tokens, profile, and tenant admins' user management.

Views call these; they hold the rules:

* request-code and password/reset behave the same whether or not the address has an account;
* a code is checked before anything about the account is revealed;
* login has one error for an unknown e-mail, a wrong password and an inactive account;
* tokens (issuing, rotation with reuse detection, revocation) live in :mod:`accounts.tokens`;
* a password change or reset, a deactivation, a role change and logout-all end every session of
  the user at once (:func:`user_revoke_tokens`: earlier access tokens are refused, sockets close);
* register answers the same whether or not the address is taken (the owner of a taken one is told
  by e-mail), and request-code and password reset do the same work for any address;
* the first code sign-in to an unverified account (one registered without proof of the mailbox)
  ends the registrant's password and sessions;
* a tenant always keeps at least one active admin.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import update_last_login
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.codes import CodePurpose, code_consume, code_issue
from accounts.emails import deliver_in_background, send_code_email, send_invitation_email, send_registration_email
from accounts.exceptions import InvalidCredentials, InvalidToken, SignupClosed, invalid_code
from accounts.models import User
from accounts.selectors import normalize_email, tenant_active_admins, user_get_by_email
from accounts.tokens import TokenRefused, tokens_for_user, tokens_logout, tokens_rotate, user_revoke_tokens
from audit.services import audit_code_request, audit_record, audit_sign_in
from config.errors import Conflict, ValidationFailed
from tenants.models import Tenant
from tenants.selectors import tenant_signup_allowed

__all__ = ["user_revoke_tokens"]  # re-exported: the admin ends sessions through the services

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


def user_register(*, tenant: Tenant, email: str, password: str, full_name: str = "") -> None:
    """Self-service sign-up with a password, where the tenant allows sign-up (403 otherwise).

    Says nothing about whether the address was taken: the form and strength of the input are checked
    first (400), then a new address gets an account and a welcome e-mail, a taken one the same
    password hashing and an e-mail to its owner. Tokens come from signing in.
    """
    if not tenant_signup_allowed(tenant=tenant):
        raise SignupClosed()
    email = _clean_email(email)
    _check_password_strength(password, User(tenant=tenant, email=email, full_name=full_name))
    taken = user_get_by_email(tenant=tenant, email=email) is not None
    if not taken:
        try:
            user_create(tenant=tenant, email=email, password=password, full_name=full_name)
        except Conflict:  # registered by a concurrent request
            taken = True
    if taken:
        make_password(password)  # the work creating the account would have done
    deliver_in_background(lambda: send_registration_email(tenant=tenant, email=email, already_registered=taken))


def user_update_profile(*, user: User, full_name: str | None = None) -> User:
    """What people may change about themselves: their name."""
    if full_name is not None:
        user.full_name = full_name.strip()
        user.save(update_fields=["full_name", "updated_at"])
    return user


# --- e-mail codes ----------------------------------------------------------------------------


@audit_code_request("sign_in")
def auth_request_code(*, tenant: Tenant, email: str) -> None:
    """E-mail a sign-in code when ``email`` may sign in: an active user, or anyone where sign-up is open.

    Returns nothing either way, and does the same work either way (a code is made and stored, a
    delivery handed to the background), so neither the answer nor its timing tells the addresses
    apart. A code stored for an address that may not sign in never verifies (``auth_verify_code``).
    """
    email = normalize_email(email)
    user = user_get_by_email(tenant=tenant, email=email)
    signup_allowed = tenant_signup_allowed(tenant=tenant)
    eligible = user.is_active if user is not None else signup_allowed
    code = code_issue(tenant=tenant, email=email, purpose=CodePurpose.SIGN_IN)
    deliver_in_background(
        lambda: send_code_email(tenant=tenant, email=email, code=code, purpose=CodePurpose.SIGN_IN, deliver=eligible)
    )


@audit_sign_in("code")
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


@audit_sign_in("password")
def auth_login(*, tenant: Tenant, email: str, password: str, request: Any = None) -> User:
    """The active user of ``tenant`` with this e-mail and password, or ``InvalidCredentials`` (401)."""
    user = authenticate(request, email=normalize_email(email), password=password, tenant=tenant)
    if user is None:
        raise InvalidCredentials()
    update_last_login(None, user)
    return user


def user_change_password(*, user: User, old_password: str, new_password: str) -> dict[str, str]:
    """Change the password (the old one is required) and end every other session.

    Every outstanding refresh token of the user is blacklisted; the returned fresh pair keeps the
    current session going.
    """
    if not user.check_password(old_password):
        audit_record(action="auth.password_change_failed", target=user, details={"reason": "wrong_old_password"})
        raise ValidationFailed(
            "old_password: The current password is not correct.",
            details={"fields": {"old_password": ["The current password is not correct."]}},
        )
    _check_password_strength(new_password, user, field="new_password")
    with transaction.atomic():  # not around the check above: its audit row must survive the refusal
        user.set_password(new_password)
        user.save(update_fields=["password", "updated_at"])
        user_revoke_tokens(user=user)
        audit_record(action="auth.password_changed", target=user)
    return tokens_for_user(user)


@audit_code_request("password_reset")
def password_reset_request(*, tenant: Tenant, email: str) -> None:
    """E-mail a reset code to an active user with this address; silently nothing otherwise.

    The same work either way, like :func:`auth_request_code` (a code for an address without an
    active account never confirms: ``password_reset_confirm`` checks the account).
    """
    email = normalize_email(email)
    user = user_get_by_email(tenant=tenant, email=email)
    eligible = user is not None and user.is_active
    code = code_issue(tenant=tenant, email=email, purpose=CodePurpose.PASSWORD_RESET)
    deliver_in_background(
        lambda: send_code_email(
            tenant=tenant, email=email, code=code, purpose=CodePurpose.PASSWORD_RESET, deliver=eligible
        )
    )


@audit_sign_in("reset_code", success="auth.password_reset", failure="auth.password_reset_failed")
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


def tokens_refresh(*, tenant: Tenant, refresh: str) -> dict[str, str]:
    """Rotate a refresh token of ``tenant`` (see :func:`accounts.tokens.tokens_rotate`); 401 when refused."""
    try:
        return tokens_rotate(raw=refresh, tenant_id=tenant.pk)
    except TokenRefused as exc:
        raise InvalidToken() from exc


def tokens_revoke(*, user: User, refresh: str) -> None:
    """Log out one session: ``refresh`` (one of ``user``'s) stops, and so do its access tokens."""
    try:
        tokens_logout(user=user, raw=refresh)
    except TokenRefused as exc:
        raise InvalidToken() from exc


def tokens_revoke_all(*, user: User) -> None:
    """Log out everywhere: every token ``user`` holds is refused from now on."""
    with transaction.atomic():
        user_revoke_tokens(user=user)


# --- tenant admins manage users --------------------------------------------------------------


def user_invite(
    *, tenant: Tenant, invited_by: User | None, email: str, role: str = User.Role.MEMBER, full_name: str = ""
) -> User:
    """Add a user to ``tenant`` (no password: they sign in with a code) and e-mail them an invitation."""
    user = user_create(tenant=tenant, email=email, role=role, full_name=full_name)
    inviter = (invited_by.full_name or invited_by.email) if invited_by else ""
    send_invitation_email(tenant=tenant, email=user.email, role=user.get_role_display(), invited_by=inviter)
    audit_record(action="user.invited", tenant=tenant, target=user, details={"role": user.role})
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

    A deactivation or a role change ends every session of the user at once.
    """
    if role is not None and role not in User.Role.values:
        raise ValidationFailed(f"role: {role!r} is not a role.", details={"fields": {"role": ["Not a valid role."]}})
    user = user_check_keeps_an_admin(tenant=tenant, user=user, role=role, is_active=is_active)
    user_role_before, before_active = user.role, user.is_active
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
    role_changed = role is not None and role != user_role_before
    user.save(update_fields=fields)
    if is_active is False or role_changed:
        user_revoke_tokens(user=user)  # the old tokens said another role, or the account is off
    if user.role != user_role_before:
        audit_record(
            action="user.role_changed", tenant=tenant, target=user, details={"from": user_role_before, "to": user.role}
        )
    if user.is_active != before_active:
        audit_record(
            action="user.deactivated" if not user.is_active else "user.reactivated", tenant=tenant, target=user
        )
    return user


def user_deactivate(*, tenant: Tenant, user: User) -> User:
    """Deactivate a user (their data stays); see :func:`user_update`."""
    return user_update(tenant=tenant, user=user, is_active=False)
