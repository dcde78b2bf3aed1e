"""Auth endpoints (``/api/v1/auth/...``) and tenant admins' user management (``/api/v1/users/``).

The sign-in views are public (no bearer) but tenant-scoped: ``X-Tenant-ID`` names the tenant, as
for every API path. They carry the stricter per-IP limit (``RATELIMIT_AUTH_PER_MINUTE``) and, where
an e-mail is involved, a per-address limit as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.authentication import tokens_for_user
from accounts.models import User
from accounts.permissions import IsTenantAdmin
from accounts.ratelimits import check_email_rate
from accounts.serializers import (
    AuthResponseSerializer,
    DetailSerializer,
    EmailSerializer,
    LoginSerializer,
    MeUpdateSerializer,
    PasswordChangeSerializer,
    PasswordResetConfirmSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    UserInviteSerializer,
    UserSerializer,
    UserUpdateSerializer,
    VerifyCodeResponseSerializer,
    VerifyCodeSerializer,
)
from config.errors import TenantRequired
from tenants.models import Tenant
from tenants.scoping import TenantScopedViewSet, request_tenant

CODE_SENT = "If this address can sign in, a code is on its way. It expires in {minutes} minutes."
RESET_SENT = "If an account uses this address, a reset code is on its way. It expires in {minutes} minutes."
TAGS = ["auth"]
UNAUTHENTICATED = OpenApiResponse(
    response={"$ref": "#/components/schemas/ErrorEnvelope"},  # added by config.openapi's hook
    description="Wrong credentials, or an invalid, expired or revoked token (`authentication_failed`)",
)


def _tenant(request: Request) -> Tenant:
    tenant = request_tenant(request)
    if tenant is None:  # the middleware answers first; this keeps the views failing closed regardless
        raise TenantRequired()
    return tenant


def _validated(serializer_class: type, request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _auth_payload(user: User, tokens: dict[str, str] | None = None) -> dict[str, Any]:
    return {**(tokens or tokens_for_user(user)), "user": UserSerializer(user).data}


def _minutes() -> int:
    return max(1, settings.AUTH_CODE_TTL_SECONDS // 60)


def _validated_for_email(
    request: Request, serializer_class: type, *, scope: str, rate: str
) -> tuple[Tenant, dict[str, Any]]:
    """The request's tenant and validated body, once the per-address limit on its ``email`` allows it."""
    tenant = _tenant(request)
    data = _validated(serializer_class, request)
    check_email_rate(request, scope=scope, tenant=tenant, email=data["email"], rate=rate)
    return tenant, data


def _email_code_schema(summary: str) -> Callable[[Any], Any]:
    """The schema of the views that e-mail a code: one answer whether or not the address has an account."""
    return extend_schema(
        tags=TAGS,
        summary=summary,
        request=EmailSerializer,
        description="Always 202 with the same body, whether or not the address has an account.",
        responses={202: DetailSerializer},
    )


def _send_email_code(request: Request, *, send: Callable[..., Any], message: str) -> Response:
    """Validate the address, apply its limit, hand it to ``send`` and answer 202 with ``message``."""
    tenant, data = _validated_for_email(request, EmailSerializer, scope="code", rate=settings.AUTH_CODE_EMAIL_RATE)
    send(tenant=tenant, email=data["email"])
    return Response({"detail": message.format(minutes=_minutes())}, status=status.HTTP_202_ACCEPTED)


class AuthRateLimitMixin:
    """The stricter per-IP rate limit of the sign-in endpoints (``RATELIMIT_AUTH_PER_MINUTE``)."""

    @property
    def ratelimit_rate(self) -> str:
        return f"{settings.RATELIMIT_AUTH_PER_MINUTE}/m"


class PublicAuthView(AuthRateLimitMixin, APIView):
    """No bearer token needed (one sent is ignored); the stricter per-IP rate limit applies."""

    authentication_classes: list = []
    permission_classes = [AllowAny]


class RequestCodeView(PublicAuthView):
    @_email_code_schema("E-mail a sign-in code")
    def post(self, request: Request) -> Response:
        return _send_email_code(request, send=services.auth_request_code, message=CODE_SENT)


class VerifyCodeView(PublicAuthView):
    @extend_schema(
        tags=TAGS,
        summary="Sign in with an e-mailed code",
        request=VerifyCodeSerializer,
        description="Creates the account on first sign-in where the tenant allows sign-up.",
        responses={200: VerifyCodeResponseSerializer},
    )
    def post(self, request: Request) -> Response:
        tenant, data = _validated_for_email(
            request, VerifyCodeSerializer, scope="verify", rate=settings.AUTH_LOGIN_EMAIL_RATE
        )
        user, created = services.auth_verify_code(tenant=tenant, email=data["email"], code=data["code"])
        return Response({**_auth_payload(user), "created": created})


REGISTERED = (
    "If this address can be registered, the account is ready: sign in with it. "
    "Either way we sent an e-mail to the address."
)


class RegisterView(PublicAuthView):
    @extend_schema(
        tags=TAGS,
        summary="Create an account with a password",
        request=RegisterSerializer,
        description=(
            "Always 202 with the same body, whether the address is new or taken (the owner of a taken "
            "one gets an e-mail). Sign in with `/auth/login` to get tokens."
        ),
        responses={202: DetailSerializer},
    )
    def post(self, request: Request) -> Response:
        tenant, data = _validated_for_email(
            request, RegisterSerializer, scope="register", rate=settings.AUTH_CODE_EMAIL_RATE
        )
        services.user_register(
            tenant=tenant, email=data["email"], password=data["password"], full_name=data.get("full_name", "")
        )
        return Response({"detail": REGISTERED}, status=status.HTTP_202_ACCEPTED)


class LoginView(PublicAuthView):
    @extend_schema(
        tags=TAGS,
        summary="Sign in with e-mail and password",
        request=LoginSerializer,
        responses={200: AuthResponseSerializer, 401: UNAUTHENTICATED},
    )
    def post(self, request: Request) -> Response:
        tenant, data = _validated_for_email(
            request, LoginSerializer, scope="login", rate=settings.AUTH_LOGIN_EMAIL_RATE
        )
        user = services.auth_login(
            tenant=tenant, email=data["email"], password=data["password"], request=request._request
        )
        return Response(_auth_payload(user))


class RefreshView(PublicAuthView):
    @extend_schema(
        tags=TAGS,
        summary="Rotate a refresh token",
        request=RefreshSerializer,
        description="Returns a new pair; the refresh token sent is blacklisted (single use).",
        responses={200: TokenPairSerializer, 401: UNAUTHENTICATED},
    )
    def post(self, request: Request) -> Response:
        tenant = _tenant(request)
        data = _validated(RefreshSerializer, request)
        return Response(services.tokens_refresh(tenant=tenant, refresh=data["refresh"]))


class LogoutView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS, summary="Sign out: blacklist a refresh token", request=RefreshSerializer, responses={204: None}
    )
    def post(self, request: Request) -> Response:
        data = _validated(RefreshSerializer, request)
        services.tokens_revoke(user=request.user, refresh=data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(AuthRateLimitMixin, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="Sign out everywhere",
        request=None,
        description="Every access and refresh token of yours stops working at once; open sockets close (4401).",
        responses={204: None, 401: UNAUTHENTICATED},
    )
    def post(self, request: Request) -> Response:
        services.tokens_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(tags=TAGS, summary="The signed-in user", responses={200: UserSerializer})
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user).data)

    @extend_schema(
        tags=TAGS, summary="Update your profile", request=MeUpdateSerializer, responses={200: UserSerializer}
    )
    def patch(self, request: Request) -> Response:
        data = _validated(MeUpdateSerializer, request)
        user = services.user_update_profile(user=request.user, full_name=data.get("full_name"))
        return Response(UserSerializer(user).data)


class PasswordChangeView(AuthRateLimitMixin, APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="Change your password",
        request=PasswordChangeSerializer,
        description="Every other session's refresh token stops working; a fresh pair is returned.",
        responses={200: TokenPairSerializer},
    )
    def post(self, request: Request) -> Response:
        data = _validated(PasswordChangeSerializer, request)
        tokens = services.user_change_password(
            user=request.user, old_password=data["old_password"], new_password=data["new_password"]
        )
        return Response(tokens)


class PasswordResetView(PublicAuthView):
    @_email_code_schema("E-mail a password reset code")
    def post(self, request: Request) -> Response:
        return _send_email_code(request, send=services.password_reset_request, message=RESET_SENT)


class PasswordResetConfirmView(PublicAuthView):
    @extend_schema(
        tags=TAGS,
        summary="Set a new password with a reset code",
        request=PasswordResetConfirmSerializer,
        description="Every session of the account ends; sign in again with the new password.",
        responses={200: DetailSerializer},
    )
    def post(self, request: Request) -> Response:
        tenant, data = _validated_for_email(
            request, PasswordResetConfirmSerializer, scope="verify", rate=settings.AUTH_LOGIN_EMAIL_RATE
        )
        services.password_reset_confirm(
            tenant=tenant, email=data["email"], code=data["code"], new_password=data["new_password"]
        )
        return Response({"detail": "Your password has been changed; sign in with it."})


@extend_schema_view(
    list=extend_schema(summary="List the tenant's users (admins only)"),
    retrieve=extend_schema(summary="A user of the tenant (admins only)"),
    create=extend_schema(
        summary="Invite a user (they sign in with an e-mailed code)",
        request=UserInviteSerializer,
        responses={201: UserSerializer},
    ),
    update=extend_schema(
        summary="Change a user's role, activity or name", request=UserUpdateSerializer, responses={200: UserSerializer}
    ),
    partial_update=extend_schema(
        summary="Change a user's role, activity or name", request=UserUpdateSerializer, responses={200: UserSerializer}
    ),
    destroy=extend_schema(summary="Deactivate a user (their data is kept)", responses={204: None}),
)
class UserViewSet(TenantScopedViewSet):
    """Tenant admins manage their tenant's users; a tenant always keeps one active admin (409 otherwise)."""

    queryset = User.objects.filter(is_service_account=False).select_related("tenant").order_by("email")
    serializer_class = UserSerializer
    permission_classes = [IsAuthenticated, IsTenantAdmin]
    filterset_fields = ["role", "is_active"]
    search_fields = ["email", "full_name"]
    ordering_fields = ["email", "full_name", "role", "created_at", "last_login"]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = _validated(UserInviteSerializer, request)
        user = services.user_invite(tenant=_tenant(request), invited_by=request.user, **data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user = self.get_object()
        data = _validated(UserUpdateSerializer, request, partial=kwargs.get("partial", False))
        user = services.user_update(tenant=_tenant(request), user=user, **data)
        return Response(UserSerializer(user).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.user_deactivate(tenant=_tenant(request), user=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
