"""Per-agent rate limiting of the agent API (429 with Retry-After).

A fixed one-minute window per agent, counted in Redis so every web replica shares it. DRF views
count with `AgentRateThrottle`; the guardrails check counts the same key inside its own Redis
round trip (`guardrails.counters`), so both share one limit. If Redis cannot be reached the call
is let through: availability of the approval path matters more than this limit, and guardrails
still apply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from oversight.redis_clients import UNAVAILABLE, quick_client

WINDOW_SECONDS = 60


@dataclass(frozen=True)
class CallWindow:
    key: str
    limit: int
    seconds: int
    retry_after: float

    @property
    def counted(self) -> tuple[str, int, int]:
        return self.key, self.limit, self.seconds


def call_window(agent_id: int) -> CallWindow | None:
    """The agent's current window, or None when the limit is off."""
    limit = settings.OVERSIGHT_API_RATE_LIMIT_PER_MINUTE
    if not limit:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    return CallWindow(
        key=f"oversight:rate:{agent_id}:{window}",
        limit=limit,
        seconds=WINDOW_SECONDS + 1,
        retry_after=max(1.0, WINDOW_SECONDS - (now % WINDOW_SECONDS)),
    )


class Throttled(Exception):
    """Too many calls this minute; `retry_after` seconds until the next window."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Too many calls; retry in {int(retry_after)} s.")
        self.retry_after = int(retry_after)


class AgentRateThrottle(BaseThrottle):
    def allow_request(self, request: Any, view: Any) -> bool:
        agent = getattr(request, "user", None)
        if agent is None or not hasattr(agent, "pk"):
            return True
        window = call_window(agent.pk)
        if window is None:
            return True
        self.retry_after = window.retry_after
        try:
            count = rate_counter(window.key, window.seconds)
        except UNAVAILABLE:
            # ValueError too: redis-py reports a socket closed under it that way.
            return True
        return count <= window.limit

    def wait(self) -> float:
        return max(1.0, self.retry_after)


def rate_counter(key: str, ttl: int) -> int:
    # One round trip, no MULTI/EXEC: the two commands need not be atomic (a lost EXPIRE only
    # leaves a key that the next window no longer reads).
    pipe = quick_client().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, ttl)
    count, _ = pipe.execute()
    return int(count)
