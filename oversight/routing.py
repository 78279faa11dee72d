"""WebSocket URL routes. The live-update consumer joins here (SPEC §4, §8)."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
