"""The gateway's side of the Oversight API: one client per agent key, and who a key is.

The gateway holds no keys of its own: each MCP client brings an agent's API key and the gateway
calls Oversight with it, so every check, request and outcome is that agent's (§13). The
Python client is synchronous; its calls run in worker threads under one limiter, so a few
hundred calls waiting on people never starve the event loop."""

from __future__ import annotations

import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx

from oversight_client import Oversight, OversightError

T = TypeVar("T")

# A key Oversight accepted is trusted this long before it is asked again: a revoked key stops
# working through the gateway within this time (and at once for checks, which Oversight makes).
VERIFIED_FOR = 30.0
# At most this many agents' clients are kept (each holds a small connection pool).
MAX_CLIENTS = 1000
# Threads for calls to Oversight: every call waiting on a person holds one.
MAX_THREADS = 256


def key_id(key: str) -> str:
    """A key's name in the gateway's memory and logs: never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Agents:
    def __init__(self, oversight_url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.oversight_url = oversight_url
        self._transport = transport
        self._clients: OrderedDict[str, Oversight] = OrderedDict()
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}
        self.limiter = anyio.CapacityLimiter(MAX_THREADS)

    def client(self, key: str) -> Oversight:
        name = key_id(key)
        client = self._clients.get(name)
        if client is None:
            # Few retries: a check that cannot reach Oversight fails closed, soon.
            client = Oversight(
                self.oversight_url, key, timeout=30.0, max_retries=2, transport=self._transport
            )
            self._clients[name] = client
            if len(self._clients) > MAX_CLIENTS:
                _, oldest = self._clients.popitem(last=False)
                oldest.close()
        else:
            self._clients.move_to_end(name)
        return client

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call the synchronous client in a worker thread. A cancelled caller still waits for
        its thread (an HTTP call cannot be interrupted; a long-poll lasts at most
        gateway.POLL_SECONDS): so MAX_THREADS really bounds the threads."""
        return await anyio.to_thread.run_sync(
            functools.partial(function, *args, **kwargs), limiter=self.limiter
        )

    async def whoami(self, key: str) -> dict[str, Any] | None:
        """The agent a key belongs to (GET /api/v1/agents/me), or None if Oversight refuses it.
        Raises OversightUnavailable when Oversight cannot say."""
        name = key_id(key)
        known = self._verified.get(name)
        if known is not None and time.monotonic() - known[0] < VERIFIED_FOR:
            return known[1]
        try:
            agent = await self.run(self.client(key).me)
        except OversightError as error:
            if error.status in {401, 403}:
                self._verified.pop(name, None)
                return None
            raise OversightUnavailable(f"Oversight answered {error.status}: {error}") from None
        except httpx.HTTPError as error:
            raise OversightUnavailable(f"Oversight could not be reached: {error}") from None
        self._verified[name] = (time.monotonic(), agent)
        if len(self._verified) > MAX_CLIENTS:
            self._verified.pop(next(iter(self._verified)))
        return agent

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


class OversightUnavailable(Exception):
    """Oversight did not answer: the gateway refuses rather than guess (fail closed)."""
