"""Operators' admin for users: by tenant and role, with activate/deactivate actions.

Operators themselves are users without a tenant (``is_staff``); tenant users never get staff rights.
A user's tenant is fixed once created. Like the API, the admin never leaves a tenant without an active
admin: the deactivate action and the change form go through the same check as ``user_update``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import RevokedTokenFamily, User
from accounts.services import user_check_keeps_an_admin, user_deactivate, user_revoke_tokens
from config.errors import Conflict


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ["email", "tenant", "role", "full_name"]

    def clean_email(self) -> str:
        return (self.cleaned_data.get("email") or "").strip().lower()


class UserAdminChangeForm(UserChangeForm):
    """The change form; ``tenant`` is read-only here (see ``UserAdmin.get_readonly_fields``)."""

    class Meta:
        model = User
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        tenant = cleaned.get("tenant") if "tenant" in self.fields else self.instance.tenant
        if tenant is not None and (cleaned.get("is_staff") or cleaned.get("is_superuser")):
            raise forms.ValidationError("Tenant users cannot be staff: operators are users without a tenant.")
        if tenant is not None and self.instance.pk is not None:
            # Runs inside the admin's transaction, so the locks it takes hold until the change is saved.
            try:
                user_check_keeps_an_admin(
                    tenant=tenant,
                    user=self.instance,
                    role=cleaned.get("role"),
                    is_active=cleaned.get("is_active") if "is_active" in self.fields else None,
                )
            except Conflict as exc:
                raise forms.ValidationError(exc.message, code="last_admin") from exc
        return cleaned


SESSION_ENDING_FIELDS = {"is_active", "role", "is_staff", "is_superuser", "groups", "user_permissions"}


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserAdminChangeForm
    add_form = UserCreationForm
    list_display = ["email", "tenant", "role", "is_active", "email_verified", "is_staff", "last_login", "created_at"]
    list_filter = ["tenant", "role", "is_active", "email_verified", "is_staff"]
    search_fields = ["email", "full_name", "tenant__slug", "=id"]
    list_select_related = ["tenant"]
    ordering = ["tenant__slug", "email"]
    readonly_fields = ["id", "last_login", "created_at", "updated_at"]
    filter_horizontal = ["groups", "user_permissions"]
    actions = ["activate", "deactivate"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password"]}),
        ("Tenant", {"fields": ["tenant", "role", "full_name", "email_verified"]}),
        ("Status", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "created_at", "updated_at"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "classes": ["wide"],
                "fields": ["email", "tenant", "role", "full_name", "usable_password", "password1", "password2"],
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        return fields if obj is None else [*fields, "tenant"]

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # As through the API: a deactivation or a change of rights ends every session at once.
        # (A new password does too: User.set_password retires the earlier tokens.)
        if change and SESSION_ENDING_FIELDS & set(form.changed_data):
            user_revoke_tokens(user=obj)

    @admin.action(description="Activate the selected users")
    def activate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        changed = queryset.filter(is_active=False).update(is_active=True)
        self.message_user(request, f"Activated {changed} user(s).", messages.SUCCESS)

    @admin.action(description="Deactivate the selected users (and end their sessions)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        deactivated = 0
        refused: list[User] = []
        for user in queryset.filter(is_active=True).select_related("tenant"):
            if user.tenant is None:  # an operator
                User.objects.filter(pk=user.pk).update(is_active=False)
                user_revoke_tokens(user=user)
            else:
                try:
                    user_deactivate(tenant=user.tenant, user=user)
                except Conflict:
                    refused.append(user)
                    continue
            deactivated += 1
        if deactivated or not refused:
            self.message_user(request, f"Deactivated {deactivated} user(s).", messages.SUCCESS)
        if refused:
            names = ", ".join(f"{u.email} ({u.tenant.slug})" for u in refused)
            self.message_user(
                request,
                f"Not deactivated, each is the last active admin of their tenant: {names}. "
                "Make someone else an admin of that tenant first.",
                messages.ERROR,
            )


@admin.register(RevokedTokenFamily)
class RevokedTokenFamilyAdmin(admin.ModelAdmin):
    """Sign-ins whose tokens are refused (logged out, or a reused refresh token): read-only evidence."""

    list_display = ["id", "user", "reason", "revoked_at"]
    list_filter = ["reason", "revoked_at"]
    search_fields = ["=id", "user__email"]
    list_select_related = ["user"]
    readonly_fields = ["id", "user", "reason", "revoked_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RevokedTokenFamily | None = None) -> bool:
        return False
