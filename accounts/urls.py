"""``/api/v1/auth/...`` (sign-in) and ``/api/v1/users/`` (tenant admins). A trailing slash is optional."""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from accounts import views

router = SimpleRouter(trailing_slash="/?")
router.register("users", views.UserViewSet, basename="user")

auth_patterns = [
    re_path(r"^auth/request-code/?$", views.RequestCodeView.as_view(), name="auth-request-code"),
    re_path(r"^auth/verify-code/?$", views.VerifyCodeView.as_view(), name="auth-verify-code"),
    re_path(r"^auth/register/?$", views.RegisterView.as_view(), name="auth-register"),
    re_path(r"^auth/login/?$", views.LoginView.as_view(), name="auth-login"),
    re_path(r"^auth/refresh/?$", views.RefreshView.as_view(), name="auth-refresh"),
    re_path(r"^auth/logout/?$", views.LogoutView.as_view(), name="auth-logout"),
    re_path(r"^auth/logout-all/?$", views.LogoutAllView.as_view(), name="auth-logout-all"),
    re_path(r"^auth/me/?$", views.MeView.as_view(), name="auth-me"),
    re_path(r"^auth/password/change/?$", views.PasswordChangeView.as_view(), name="auth-password-change"),
    re_path(r"^auth/password/reset/?$", views.PasswordResetView.as_view(), name="auth-password-reset"),
    re_path(
        r"^auth/password/reset/confirm/?$", views.PasswordResetConfirmView.as_view(), name="auth-password-reset-confirm"
    ),
]

urlpatterns = auth_patterns + router.urls
