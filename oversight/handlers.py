"""The agent API's own middleware stack (settings.API_MIDDLEWARE).

Agents send a bearer key on every call and get JSON back, so the browser's middleware
(sessions, CSRF, the login wall, messages, htmx, login throttling, framing and CSP headers for
HTML) does nothing for them but cost time: in an async stack each of Django's middleware
classes hops to a thread and back for each of its hooks. `oversight.asgi` sends the API's paths
to a handler built from the short list and everything else, the API's docs page included, to
Django's usual one.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import Resolver404, resolve

API_PREFIX = "/api/"
# Pages for people under the API's prefix: they keep the browser stack's CSP and framing headers.
PAGES_UNDER_API = ("/api/v1/docs/",)


def on_api_stack(path_info: str) -> bool:
    return path_info.startswith(API_PREFIX) and not path_info.startswith(PAGES_UNDER_API)


def path_info(scope: dict[str, Any]) -> str:
    """The path below the script prefix, found as Django's ASGIRequest finds it (the root path
    or FORCE_SCRIPT_NAME, cut off only at a segment boundary)."""
    path: str = scope["path"]
    script_name = get_script_prefix(scope).rstrip("/")
    if script_name and (path.startswith(script_name + "/") or path == script_name):
        return path[len(script_name) :]
    return path


class ApiMiddlewareMixin:
    """A Django request handler that builds its chain from settings.API_MIDDLEWARE.

    What the short stack pays (7 December, web CPU per call of the same bare view at 32
    clients): 1.0-1.1 ms on it (/api/v1/health), 2.3 ms on the pages' stack (/healthz).

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


# --- views served without a thread of their own (long-polls) -----------------------------------
#
# Django's ASGI handler opens a ThreadSensitiveContext per request, and the first sync step in
# it (the request_started signal's receivers, already) starts a thread that lives until the
# response is sent. A long-poll holds its request for up to a minute doing nothing, so 2,000
# waiting agents were 2,000 idle OS threads (measured: 510 threads for 500 waiters). Views marked
# `@threadless` are served outside such a context: the handler's own short sync steps run on
# asgiref's one shared thread, and the view's database work on a small pool (`database_call`),
# so a waiter costs a coroutine and a socket, not a thread.

_THREADLESS = contextvars.ContextVar("threadless", default=False)
_POOL = ThreadPoolExecutor(
    max_workers=settings.OVERSIGHT_THREADLESS_POOL_SIZE, thread_name_prefix="threadless"
)


def threadless[View: Callable[..., Any]](view: View) -> View:
    """Mark an async view whose requests the API handler serves without a per-request thread.
    Its synchronous work must go through `database_call`."""
    view.threadless = True  # type: ignore[attr-defined]
    return view


def database_call[**P, R](func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`sync_to_async` for a threadless view: on the shared pool when the request is served
    threadless (each call must leave no connection state behind: close or return it); on the
    request's own thread otherwise (Django's test client, whose test transaction lives there)."""
    if _THREADLESS.get():
        return sync_to_async(func, thread_sensitive=False, executor=_POOL)
    return sync_to_async(func)


def _is_threadless(scope: dict[str, Any]) -> bool:
    if scope["type"] != "http" or scope["method"] != "GET":
        return False
    try:
        match = resolve(path_info(scope))
    except Resolver404:
        return False
    return getattr(match.func, "threadless", False)


class ApiHandler(ApiMiddlewareMixin, ASGIHandler):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not _is_threadless(scope):
            await super().__call__(scope, receive, send)
            return
        token = _THREADLESS.set(True)
        try:
            await self.handle(scope, receive, send)
        finally:
            _THREADLESS.reset(token)
