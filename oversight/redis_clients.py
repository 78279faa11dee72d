"""The process's Redis client for the request path's best-effort calls (rate limit, wake-ups).

Short timeouts, because these calls run inside an agent's request and must never hold it up;
callers catch `UNAVAILABLE` and carry on without Redis (SPEC §8: the API keeps working).
"""

from __future__ import annotations

import functools

import redis
from django.conf import settings

# What a call raises when Redis is down or its connection was closed under it.
UNAVAILABLE = (redis.RedisError, OSError, ValueError)


@functools.cache
def quick_client() -> redis.Redis:
    """One client (and connection pool) per process, created on first use."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
