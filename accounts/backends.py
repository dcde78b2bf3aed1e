"""Authenticate by e-mail within a tenant (or, with no tenant, an operator for the admin)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts.models import User
from tenants.models import Tenant


class EmailTenantBackend(ModelBackend):
    """``authenticate(request, email=..., password=..., tenant=...)``; ``username`` is accepted as e-mail.

    Without a tenant only operators (staff users without a tenant) can sign in: that is the admin.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        tenant: Tenant | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        email = (email or username or "").strip().lower()
        if not email or password is None:
            return None
        user = (
            User.objects.filter(email=email, tenant=tenant, is_service_account=False).select_related("tenant").first()
        )
        if user is None:
            User().set_password(password)  # same work whether or not the user exists
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            if tenant is None and not user.is_staff:
                return None
            return user
        return None
