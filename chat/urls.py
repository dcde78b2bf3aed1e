"""Chat routes under /api/v1/. A trailing slash is optional on the answer's ``stream`` and ``cancel``."""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from chat.views import ChatSessionViewSet

router = SimpleRouter(trailing_slash="/?")
router.register("chat/sessions", ChatSessionViewSet, basename="chat-session")

ANSWER = r"^chat/sessions/(?P<pk>[^/.]+)/messages/(?P<message_id>[^/.]+)"
urlpatterns = [
    re_path(
        ANSWER + r"/stream/?$",
        ChatSessionViewSet.as_view({"get": "message_stream"}, filter_backends=[]),
        name="chat-session-message-stream",
    ),
    re_path(
        ANSWER + r"/cancel/?$",
        ChatSessionViewSet.as_view({"post": "message_cancel"}, filter_backends=[]),
        name="chat-session-message-cancel",
    ),
    *router.urls,
]
