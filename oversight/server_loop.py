"""Handing a best-effort async send from a request thread to the ASGI server's event loop.

Django runs a sync view on a thread of its own while the server's event loop keeps serving.
After a change commits, its notifications (Redis publish, channel-layer sends) need not hold
up the response: `server_loop()` finds that loop, and `spawn()` starts the send on it and
returns at once. Elsewhere (Celery workers, management commands, tests without a server) there
is no such loop and the caller sends before returning.

Kept for isolation, not speed (re-measured 7 December: 2-3 % of a create's time, under the 10 %
a speed trick must pay): sent from the request thread, a channel-layer send to a Redis that
accepts and never answers holds the response with no timeout of its own; tried without this,
test_redis_outage's calls timed out.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import SyncToAsync


def server_loop() -> asyncio.AbstractEventLoop | None:
    """The ASGI server's event loop when called on one of its request threads, else None.

    asgiref records the loop on the threads it runs sync code in (that is how `async_to_sync`
    finds its way back); a stale record from another process or a stopped loop does not count.
    """
    local = SyncToAsync.threadlocal
    loop: asyncio.AbstractEventLoop | None = getattr(local, "main_event_loop", None)
    if loop is None or getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    return loop if loop.is_running() and not loop.is_closed() else None


_pending: set[asyncio.Task[None]] = set()


def spawn(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, None]) -> None:
    """Start `coroutine` on `loop` from another thread; it must handle its own errors."""

    def start() -> None:
        task = loop.create_task(coroutine)
        _pending.add(task)  # a task nobody references may be collected before it runs
        task.add_done_callback(_pending.discard)

    loop.call_soon_threadsafe(start)
