"""WebSocket URL routes (SPEC §4, §8)."""

from __future__ import annotations

from django.urls import path

from approvals.consumers import LiveConsumer, NoticeConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
    path("ws/notices/", NoticeConsumer.as_asgi()),
]
