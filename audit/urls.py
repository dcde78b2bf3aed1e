"""``/api/v1/audit/``. A trailing slash is optional."""

from rest_framework.routers import SimpleRouter

from audit import views

router = SimpleRouter(trailing_slash="/?")
router.register("audit", views.AuditEventViewSet, basename="audit-event")

urlpatterns = router.urls
