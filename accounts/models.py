"""Users: each belongs to one tenant (the same e-mail in two tenants is two users).

Operators are staff users without a tenant; they sign in to the Django admin only.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models import Q

from tenants.models import Tenant, TenantOwnedQuerySet


class UserQuerySet(TenantOwnedQuerySet):
    pass


class UserManager(BaseUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    use_in_migrations = True

    def create_user(
        self, email: str, password: str | None = None, *, tenant: Tenant | None = None, **extra: Any
    ) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), tenant=tenant, **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str | None) -> User:
        """The operator (tenant-less user) with this e-mail: natural keys are only unique among operators."""
        return self.get(email=(username or "").strip().lower(), tenant__isnull=True)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        """An operator: staff, superuser, no tenant."""
        extra.update(is_staff=True, is_superuser=True, role=User.Role.ADMIN)
        return self.create_user(email, password, tenant=None, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in to one tenant, with a role there."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="users")
    email = models.EmailField(max_length=254)
    full_name = models.CharField(max_length=200, blank=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    email_verified = models.BooleanField(default=False)
    # In every token; bumped (accounts.services.user_revoke_tokens) to refuse all tokens issued before.
    token_version = models.PositiveIntegerField(default=0, editable=False)
    # An API key's account (integrations.APIKey.user): no password, never signs in, hidden from people lists.
    is_service_account = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "email"], name="accounts_user_unique_tenant_email"),
            models.UniqueConstraint(
                fields=["email"], condition=Q(tenant__isnull=True), name="accounts_user_unique_operator_email"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.tenant_id or 'operator'})"

    @property
    def is_tenant_admin(self) -> bool:
        return self.role == self.Role.ADMIN

    def set_password(self, raw_password: str | None) -> None:
        """Set the password; for an existing account this also retires every token issued before.

        Whatever path changes a password (the API, the admin's form, ``manage.py changepassword``),
        a full ``save()`` stores the new ``token_version`` with it; the services that save only some
        fields call ``user_revoke_tokens``, which bumps it in the database.
        """
        super().set_password(raw_password)
        if not self._state.adding and self.pk is not None:
            self.token_version += 1


class RevokedTokenFamily(models.Model):
    """A sign-in whose tokens are refused: every token rotated from one sign-in carries its id (``fam``).

    Logging out, or presenting a rotated refresh token after the grace window (a stolen copy in
    use), adds a row (see ``accounts.tokens``). Rows older than the refresh lifetime are no longer
    needed and are deleted daily (``accounts.tokens.revoked_families_purge``, from beat).
    """

    id = models.UUIDField(primary_key=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="revoked_token_families")
    revoked_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=20)

    class Meta:
        ordering = ["-revoked_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.reason})"
