from __future__ import annotations

from django.urls import path

websocket_urlpatterns: list = [
    # path("ws/chat/", ChatConsumer.as_asgi()),  -- added by the chat app
]
