"""Middleware that runs in async mode without needless trips to a thread.

WhiteNoise's middleware is sync-only; one sync-only middleware makes Django run every request,
including the long-poll waits of the agent API, on a thread. AsyncWhiteNoiseMiddleware serves
static files the same way and passes everything else straight through in async mode.
ApiSecurityMiddleware is the agent API's whole stack (settings.API_MIDDLEWARE).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponsePermanentRedirect,
)
from django.middleware.security import SecurityMiddleware
from whitenoise.middleware import WhiteNoiseMiddleware  # type: ignore[import-untyped]


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(get_response, *args, **kwargs)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        return super().__call__(request)

    def _lookup(self, path: str) -> Any:
        return self.find_file(path) if self.autorefresh else self.files.get(path)

    def _serve_whole(self, static_file: Any, request: HttpRequest) -> HttpResponseBase:
        """WhiteNoise streams files from a synchronous iterator, which Django's ASGI handler
        warns about; our static files are small, so send them as one body instead."""
        response: HttpResponseBase = self.serve(static_file, request)
        if not response.streaming:
            return response
        whole = HttpResponse(b"".join(response.streaming_content), status=response.status_code)  # type: ignore[attr-defined]
        for header, value in response.items():
            whole[header] = value
        response.close()
        return whole

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.static_prefix):
            static_file = await sync_to_async(self._lookup, thread_sensitive=False)(
                request.path_info
            )
            if static_file is not None:
                serve = sync_to_async(self._serve_whole, thread_sensitive=False)
                return await serve(static_file, request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        return await get_response(request)


class ApiSecurityMiddleware(SecurityMiddleware):
    """The agent API's one middleware: Django's SecurityMiddleware, plus the two things the
    pages' CommonMiddleware does that an API needs too, with every hook run on the event loop.

    - A Host outside ALLOWED_HOSTS is refused (Django answers 400) before any work is done.
    - A response gets its Content-Length, so it is not sent chunked.

    In an async stack Django's MiddlewareMixin runs each hook on a thread and comes back; these
    only read the request and settings and set headers, so the round trip buys nothing.
    """

    def process_request(self, request: HttpRequest) -> HttpResponsePermanentRedirect | None:
        request.get_host()  # raises DisallowedHost
        return super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        response = super().process_response(request, response)
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponse | None = self.process_request(request)
        if response is None:
            # In async mode the next layer is a coroutine function.
            response = await cast(Awaitable[HttpResponse], self.get_response(request))
        return self.process_response(request, response)
