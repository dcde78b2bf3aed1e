"""``/api/v1/api-keys/`` and ``/api/v1/webhooks/``. A trailing slash is optional."""

from rest_framework.routers import SimpleRouter

from integrations import views

router = SimpleRouter(trailing_slash="/?")
router.register("api-keys", views.APIKeyViewSet, basename="api-key")
router.register("webhooks", views.WebhookEndpointViewSet, basename="webhook")

urlpatterns = router.urls
