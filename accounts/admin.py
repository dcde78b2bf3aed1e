"""Operators' admin for users: by tenant and role, with activate/deactivate actions.

Operators themselves are users without a tenant (``is_staff``); tenant users never get staff rights.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.models import User
from accounts.services import user_revoke_tokens


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ["email", "tenant", "role", "full_name"]

    def clean_email(self) -> str:
        return (self.cleaned_data.get("email") or "").strip().lower()


class UserAdminChangeForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("tenant") is not None and (cleaned.get("is_staff") or cleaned.get("is_superuser")):
            raise forms.ValidationError("Tenant users cannot be staff: operators are users without a tenant.")
        return cleaned


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

    @admin.action(description="Activate the selected users")
    def activate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        changed = queryset.filter(is_active=False).update(is_active=True)
        self.message_user(request, f"Activated {changed} user(s).", messages.SUCCESS)

    @admin.action(description="Deactivate the selected users (and end their sessions)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset.filter(is_active=True))
        queryset.filter(pk__in=[u.pk for u in users]).update(is_active=False)
        for user in users:
            user_revoke_tokens(user=user)
        self.message_user(request, f"Deactivated {len(users)} user(s).", messages.SUCCESS)
