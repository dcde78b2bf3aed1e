"""WebSocket routes (``config.asgi`` mounts them behind ``config.websocket_origin.OriginValidator``)."""

from __future__ import annotations

from django.urls import path

from chat.consumers import ChatConsumer

websocket_urlpatterns: list = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]
