"""The process's Redis clients for the request path's best-effort calls (rate limit, wake-ups).

Short timeouts, because these calls run inside an agent's request and must never hold it up;
callers catch `UNAVAILABLE` and carry on without Redis (SPEC §8: the API keeps working).

A Redis that is down, or that accepts connections and never answers, would still cost every
request its timeouts, call after call. So the sync client shares a `Breaker`: once a call has
failed, calls fail at once, except one a second that tries again and, if Redis answers, lets the
others through again. Measured with Redis stalled behind a proxy (issue 19), a check took 0.5 s
each time before, and only the one that tries does now.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio as aioredis
from django.conf import settings

# What a call raises when Redis is down or its connection was closed under it.
UNAVAILABLE = (redis.RedisError, OSError, ValueError)

TIMEOUT_SECONDS = 0.5  # to connect, and for each reply
RETRY_SECONDS = 1.0  # after a failure, how often a call tries Redis again
_FAILURES = (redis.ConnectionError, redis.TimeoutError, OSError)


class Breaker:
    """Whether Redis answered lately (one per process). Open after a failed call: then
    `allow()` says no, except to one caller per RETRY_SECONDS, whose call decides."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open_until = 0.0  # 0: closed

    @property
    def closed(self) -> bool:
        return not self._open_until

    def allow(self) -> bool:
        if not self._open_until:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._open_until:
                return False
            self._open_until = now + RETRY_SECONDS  # this caller tries; the others wait for it
            return True

    def failed(self) -> None:
        self._open_until = time.monotonic() + RETRY_SECONDS

    def succeeded(self) -> None:
        self._open_until = 0.0


breaker = Breaker()
SKIPPED = "Redis did not answer a moment ago; not trying again yet."


class _Guarded:
    """A redis-py connection that reports to the breaker and is not tried while it is open."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not breaker.allow():
            raise redis.ConnectionError(SKIPPED)
        try:
            super().send_packed_command(command, check_health)  # type: ignore[misc]
        except _FAILURES:
            breaker.failed()
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except _FAILURES:
            breaker.failed()
            raise
        breaker.succeeded()
        return response


class _GuardedConnection(_Guarded, redis.Connection):
    pass


class _GuardedSSLConnection(_Guarded, redis.SSLConnection):
    pass


class _GuardedUnixConnection(_Guarded, redis.UnixDomainSocketConnection):
    pass


_GUARDED = {"rediss": _GuardedSSLConnection, "unix": _GuardedUnixConnection}


def answers() -> bool:
    """Whether Redis answers, asked without waiting on it again when it did not a moment ago:
    for callers whose own client has longer timeouts (Celery publishing a task)."""
    if breaker.closed:
        return True
    try:
        return bool(quick_client().ping())
    except UNAVAILABLE:
        return False


@functools.cache
def quick_client() -> redis.Redis:
    """One client (and connection pool) per process, created on first use."""
    connection_class = _GUARDED.get(urlparse(settings.REDIS_URL).scheme, _GuardedConnection)
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=TIMEOUT_SECONDS,
        socket_timeout=TIMEOUT_SECONDS,
        connection_class=connection_class,
    )


_steady_clients: dict[str, redis.Redis] = {}


def steady_client() -> redis.Redis:
    """A client the breaker does not stop, with the same short timeouts: for the few calls that
    must be tried even though another call failed a moment ago (publishing a change)."""
    url = settings.REDIS_URL
    client = _steady_clients.get(url)
    if client is None:
        client = _steady_clients[url] = redis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
        )
    return client


_loop_clients: dict[int, tuple[asyncio.AbstractEventLoop, aioredis.Redis]] = {}


def quick_async_client() -> aioredis.Redis:
    """The same, for async code: one client per running event loop (an asyncio client cannot
    move between loops). The identity check keeps the client of a closed loop whose id was
    reused from being picked up."""
    loop = asyncio.get_running_loop()
    known = _loop_clients.get(id(loop))
    if known is None or known[0] is not loop:
        known = _loop_clients[id(loop)] = (
            loop,
            aioredis.Redis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=TIMEOUT_SECONDS,
                socket_timeout=TIMEOUT_SECONDS,
            ),
        )
    return known[1]
