"""``/api/v1/tenant/`` (the caller's tenant). A trailing slash is optional."""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from tenants.usage_views import UsageView
from tenants.views import TenantView

router = SimpleRouter(trailing_slash="/?")

urlpatterns = [
    re_path(r"^tenant/?$", TenantView.as_view(), name="tenant"),
    re_path(r"^usage/?$", UsageView.as_view(), name="usage"),
    *router.urls,
]
