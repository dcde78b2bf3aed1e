"""Root URLs. Every API route lives under /api/v1/ and is owned by its app's urls.py."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from chat.asyncapi import AsyncAPIView
from config.errors import not_found
from console.views import RootView
from documents.views import signed_file
from health.views import HealthView, metrics_view

api_v1 = [
    path("", include("health.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("schema/asyncapi/", AsyncAPIView.as_view(), name="asyncapi"),  # the chat socket's protocol
    path("", include("accounts.urls")),
    path("", include("tenants.urls")),
    path("", include("tasks.urls")),
    path("", include("documents.urls")),
    path("", include("chat.urls")),
    path("", include("integrations.urls")),
    path("", include("audit.urls")),
]

urlpatterns = [
    path("", RootView.as_view(), name="root"),
    path("console/", include("console.urls")),
    path("files/<str:token>", signed_file, name="document-signed-file"),
    path("favicon.ico", RedirectView.as_view(url="/static/console/favicon.svg", permanent=True)),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; METRICS_TOKEN or loopback only
    path("api/v1/", include(api_v1)),
    # The split view serves Swagger UI's start-up script as a file (?script): no inline script (CSP).
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema", template_name="documind/redoc.html"), name="redoc"),
    path("admin/", admin.site.urls),
    # Anything else is a 404 in the envelope, with DEBUG on too (Django's debug page is HTML); missing
    # static and media files included (existing static files never get here: ServeStatic answers first).
    re_path(r"^.*$", not_found),
]

handler400 = "config.errors.handler400"
handler403 = "config.errors.handler403"
handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"
