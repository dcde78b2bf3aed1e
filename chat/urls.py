"""Chat routes under /api/v1/."""

from rest_framework.routers import SimpleRouter

from chat.views import ChatSessionViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("chat/sessions", ChatSessionViewSet, basename="chat-session")
urlpatterns = router.urls
