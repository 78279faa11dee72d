"""The agent API's own middleware stack (settings.API_MIDDLEWARE).

Agents send a bearer key on every call and get JSON back, so the browser's middleware
(sessions, CSRF, the login wall, messages, htmx, login throttling, framing and CSP headers for
HTML) does nothing for them but cost time: in an async stack each of Django's middleware
classes hops to a thread and back for each of its hooks. `oversight.asgi` sends the API's paths
to a handler built from the short list and everything else, the API's docs page included, to
Django's usual one.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_PREFIX = "/api/"
# Pages for people under the API's prefix: they keep the browser stack's CSP and framing headers.
PAGES_UNDER_API = ("/api/v1/docs/",)


def on_api_stack(path_info: str) -> bool:
    return path_info.startswith(API_PREFIX) and not path_info.startswith(PAGES_UNDER_API)


class ApiMiddlewareMixin:
    """A Django request handler that builds its chain from settings.API_MIDDLEWARE.

    The swap below is process-wide for its moment: build such a handler before anything is
    served, not while another handler builds its chain (`oversight.asgi` builds both at import).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # Django's BaseHandler reads the list from settings.MIDDLEWARE and takes no other. The
        # handler is built once, before it serves anything, and the setting is put back at once.
        browser_stack = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)  # type: ignore[misc]
        finally:
            settings.MIDDLEWARE = browser_stack


class ApiHandler(ApiMiddlewareMixin, ASGIHandler):
    pass
