"""The process's Redis clients for the request path's best-effort calls (rate limit, wake-ups).

Short timeouts, because these calls run inside an agent's request and must never hold it up;
callers catch `UNAVAILABLE` and carry on without Redis (SPEC §8: the API keeps working).
"""

from __future__ import annotations

import asyncio
import functools

import redis
import redis.asyncio as aioredis
from django.conf import settings

# What a call raises when Redis is down or its connection was closed under it.
UNAVAILABLE = (redis.RedisError, OSError, ValueError)

TIMEOUT_SECONDS = 0.5  # to connect, and for each reply


@functools.cache
def quick_client() -> redis.Redis:
    """One client (and connection pool) per process, created on first use."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )


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
