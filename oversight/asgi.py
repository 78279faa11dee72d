"""ASGI entry point: plain HTTP goes to Django, WebSockets to Channels consumers.

The agent API's paths are served by a handler with its own short middleware stack
(`oversight.handlers`); pages, static files and health checks by Django's usual one.

WebSocket connections are only accepted from this deployment's own origins and carry the
Django session, so each consumer can authorise the person behind the socket.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oversight.settings")

# Django must be set up before anything that imports models (the consumers below).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from oversight.handlers import ApiHandler, on_api_stack, path_info  # noqa: E402
from oversight.routing import websocket_urlpatterns  # noqa: E402


class SplitByPath:
    """HTTP requests on the agent API's paths to `api`, the others to `pages`."""

    def __init__(self, api: Any, pages: Any) -> None:
        self.api = api
        self.pages = pages

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        app = self.api if on_api_stack(path_info(scope)) else self.pages
        await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": SplitByPath(api=ApiHandler(), pages=django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
