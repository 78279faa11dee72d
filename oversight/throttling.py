"""Per-agent rate limiting of the agent API (429 with Retry-After)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from oversight.redis_clients import UNAVAILABLE, quick_client


class AgentRateThrottle(BaseThrottle):
    """A fixed one-minute window per agent, counted in Redis so every web replica shares it.

    If Redis cannot be reached the call is let through: availability of the approval path
    matters more than the rate limit, and guardrails still apply.
    """

    window_seconds = 60

    def allow_request(self, request: Any, view: Any) -> bool:
        limit = settings.OVERSIGHT_API_RATE_LIMIT_PER_MINUTE
        agent = getattr(request, "user", None)
        if not limit or agent is None or not hasattr(agent, "pk"):
            return True
        now = time.time()
        window = int(now // self.window_seconds)
        self.retry_after = self.window_seconds - (now % self.window_seconds)
        try:
            count = rate_counter(f"oversight:rate:{agent.pk}:{window}", self.window_seconds)
        except UNAVAILABLE:
            # ValueError too: redis-py reports a socket closed under it that way.
            return True
        return count <= limit

    def wait(self) -> float:
        return max(1.0, self.retry_after)


def rate_counter(key: str, ttl: int) -> int:
    # One round trip, no MULTI/EXEC: the two commands need not be atomic (a lost EXPIRE only
    # leaves a key that the next window no longer reads).
    pipe = quick_client().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, ttl + 1)
    count, _ = pipe.execute()
    return int(count)
