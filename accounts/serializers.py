"""Input and output shapes of the auth and user endpoints. Validation of form only; rules live in services."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.models import User


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know (e.g. ``role`` on /auth/me) instead of silently ignoring them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, field in self.fields.items() if not field.read_only})
            if unknown:
                raise serializers.ValidationError({key: ["This field cannot be changed here."] for key in unknown})
        return super().to_internal_value(data)


CODE_FIELD = {"min_length": 6, "max_length": 6, "help_text": "The 6-digit code from the e-mail."}


class UserSerializer(serializers.ModelSerializer):
    """A user as the API shows it (to themselves and to their tenant's admins)."""

    tenant = serializers.UUIDField(source="tenant_id", read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "full_name",
            "role",
            "is_active",
            "email_verified",
            "tenant",
            "last_login",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Short-lived bearer token for the Authorization header.")
    refresh = serializers.CharField(help_text="7-day token for /auth/refresh; single use (rotated).")


class AuthResponseSerializer(TokenPairSerializer):
    user = UserSerializer()


class VerifyCodeResponseSerializer(AuthResponseSerializer):
    created = serializers.BooleanField(help_text="Whether this sign-in created the account.")


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class EmailSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)


class VerifyCodeSerializer(EmailSerializer):
    code = serializers.RegexField(r"^\d{6}$", **CODE_FIELD)


class RegisterSerializer(EmailSerializer):
    password = serializers.CharField(
        max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    full_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class LoginSerializer(EmailSerializer):
    # No strength rules here: a login only compares, and the error must not say more than "invalid".
    password = serializers.CharField(
        max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )


class RefreshSerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096)


class MeUpdateSerializer(StrictSerializer):
    """``PATCH /api/v1/auth/me``: what people may change about themselves (their name)."""

    full_name = serializers.CharField(max_length=200, allow_blank=True, required=False)


class PasswordChangeSerializer(serializers.Serializer):
    old_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    new_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)


class PasswordResetConfirmSerializer(VerifyCodeSerializer):
    new_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)


class UserInviteSerializer(serializers.Serializer):
    """``POST /api/v1/users/``: invite someone; they sign in with an e-mailed code."""

    email = serializers.EmailField(max_length=254)
    full_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=User.Role.choices, default=User.Role.MEMBER)


class UserUpdateSerializer(StrictSerializer):
    """``PATCH /api/v1/users/{id}/``: role, activity, name (e-mail cannot change)."""

    full_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    role = serializers.ChoiceField(choices=User.Role.choices, required=False)
    is_active = serializers.BooleanField(required=False)
