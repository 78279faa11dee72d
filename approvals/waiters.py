"""Wake long-polling agents the moment their request changes (SPEC §3 `?wait=N`).

Publishers (any process, after commit) send the request id on one Redis channel. Each web
process runs one subscriber task that wakes the local waiters of that id: a waiting agent costs
an asyncio future, no database connection, no extra Redis connection and no thread (the view is
served `threadless`, see oversight.handlers). How many may wait at once is capped per process and
per agent (settings.OVERSIGHT_LONG_POLL_MAX_PER_*): past a cap the view answers 429.

If Redis is unreachable, waiters still wake: they re-read the database every few seconds, so a
lost message delays an answer by at most that long and never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from oversight.redis_clients import UNAVAILABLE, quick_async_client, quick_client
from oversight.server_loop import server_loop, spawn

logger = logging.getLogger(__name__)

CHANNEL = "oversight:requests:changed"
# How often a waiter re-reads the database on its own: often while the subscriber is cut off
# from Redis, rarely (a guard against a lost message) while it is listening.
POLL_SECONDS_DISCONNECTED = 2.0
POLL_SECONDS_CONNECTED = 15.0


def publish(request_id: str, kind: str) -> None:
    """Tell the waiters of every web process that the request changed (after commit).

    On a server's request thread the message goes out from the event loop, so the agent's
    response does not wait for Redis; elsewhere (Celery, commands) it is sent before returning.
    """
    message = f"{request_id} {kind}"
    loop = server_loop()
    if loop is not None:
        spawn(loop, _publish_from_loop(message))
        return
    try:
        quick_client().publish(CHANNEL, message)
    except UNAVAILABLE:
        logger.warning("could not publish %r; waiters will re-read", message)


async def _publish_from_loop(message: str) -> None:
    try:
        await quick_async_client().publish(CHANNEL, message)
    except Exception:  # best effort, like the sync path; an escaped error would go unlogged
        logger.warning("could not publish %r; waiters will re-read", message)


@dataclass(eq=False)
class Watch:
    """One waiter's interest in a request: woken through `event`."""

    request_id: str
    agent_id: object
    event: asyncio.Event
    since: int  # the hub's count of reads started, when this waiter began watching


@dataclass(eq=False)
class Flight:
    """A read in flight: its number among the hub's reads, the changes of its request heard
    when it started, and its task."""

    number: int
    heard: int
    task: asyncio.Task[Any]


class WaiterHub:
    """Per-process, per-event-loop registry of waiting agents keyed by request id."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._per_agent: Counter[object] = Counter()
        # Per watched request: how many change messages were heard, and each watching agent's
        # read in flight (`read`).
        self._heard: Counter[str] = Counter()
        self._reads: dict[tuple[str, object], Flight] = {}
        self._started = 0  # reads started, ever
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def _ensure_listening(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self.connected = True
                    backoff = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        request_id = message["data"].decode().split(" ", 1)[0]
                        if request_id in self._events:
                            self._heard[request_id] += 1
                        for event in list(self._events.get(request_id, ())):
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                logger.warning(
                    "long-poll subscriber lost Redis (%s); retrying in %.1fs", exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def refusal(self, agent_id: object) -> str:
        """Why one more waiter (of this agent, unless None: not known yet) is refused here, or
        "" when it may wait."""
        waiting = self._per_agent.total()
        if waiting >= settings.OVERSIGHT_LONG_POLL_MAX_PER_PROCESS:
            return f"{waiting} long-polls are waiting on this server; retry, or read without ?wait."
        if agent_id is None:
            return ""
        mine = self._per_agent[agent_id]
        if mine >= settings.OVERSIGHT_LONG_POLL_MAX_PER_AGENT:
            return f"This agent has {mine} long-polls waiting already; retry when one has ended."
        return ""

    @contextlib.contextmanager
    def watch(self, request_id: str, agent_id: object = None) -> Iterator[Watch]:
        """Register interest in `request_id` *before* reading it, so no change slips between
        the read and the wait."""
        self._ensure_listening()
        watch = Watch(request_id, agent_id, asyncio.Event(), since=self._started)
        self._events[request_id].add(watch.event)
        self._per_agent[agent_id] += 1
        try:
            yield watch
        finally:
            self._per_agent[agent_id] -= 1
            if not self._per_agent[agent_id]:
                del self._per_agent[agent_id]
            waiting = self._events.get(request_id)
            if waiting is not None:
                waiting.discard(watch.event)
                if not waiting:
                    del self._events[request_id]
                    self._heard.pop(request_id, None)

    async def read[T](self, watch: Watch, load: Callable[[], Awaitable[T]]) -> T:
        """`load()`, shared: the waiters of one agent on one request share the read in flight
        when it started after each of them began watching and after the last change heard of
        the request (so it shows what a read of their own would). A waiter that finds an older
        read in flight waits for it to end and shares the next one with the others that came
        meanwhile: at most two reads per request in a row, however many wait. The waiters a
        decision wakes at once then cost one database read, not one each (400 of them on 40
        requests were answered ~3 s after the decision, one read each on two threads; on time
        since), and so do a burst of arrivals.

        The read runs as a task of its own, so a waiter that hangs up cancels its wait, not
        the read the others wait for."""
        key = (watch.request_id, watch.agent_id)
        while True:
            heard = self._heard[watch.request_id]
            flight = self._reads.get(key)
            if flight is None or flight.task.done():
                self._started += 1
                flight = Flight(self._started, heard, asyncio.ensure_future(load()))
                self._reads[key] = flight
                flight.task.add_done_callback(functools.partial(self._landed, key, flight))
                break
            if flight.number > watch.since and flight.heard >= heard:
                break
            await asyncio.wait([flight.task])  # from before this waiter or its news: wait it out
        result: T = await asyncio.shield(flight.task)
        return result

    def _landed(self, key: tuple[str, object], flight: Flight, task: asyncio.Task[Any]) -> None:
        if self._reads.get(key) is flight:
            del self._reads[key]
        if not task.cancelled():
            task.exception()  # seen: its waiters may all have hung up before it failed

    async def wait(self, event: asyncio.Event, timeout: float) -> None:
        """Return when the watched request changes, or after at most `timeout` seconds (or
        sooner, to re-read, when no message could have been seen)."""
        poll = POLL_SECONDS_CONNECTED if self.connected else POLL_SECONDS_DISCONNECTED
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(timeout, poll))
        event.clear()


_hubs: dict[int, WaiterHub] = {}


def hub() -> WaiterHub:
    """The hub of the running event loop (tests may run several loops in one process)."""
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _hubs:
        _hubs[loop_id] = WaiterHub()
    return _hubs[loop_id]
