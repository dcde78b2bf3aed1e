"""``/console/...``: the pages of the web console and the endpoints of its cookie session."""

from django.urls import path

from console import views

urlpatterns = [
    path("", views.home, name="console-home"),
    path("auth/login", views.ConsoleLoginView.as_view(), name="console-login"),
    path("auth/verify-code", views.ConsoleVerifyCodeView.as_view(), name="console-verify-code"),
    path("auth/refresh", views.ConsoleRefreshView.as_view(), name="console-refresh"),
    path("auth/logout", views.ConsoleLogoutView.as_view(), name="console-logout"),
    path("<slug:name>", views.page, name="console-page"),
]
