"""Django's PostgreSQL backend, with a connection pool that rides out the server going away.

Left alone, psycopg_pool handles an outage badly (measured with the server cut off behind a
proxy, issue 19): every request waits the pool's whole timeout (10 s) for a connection it
cannot make; and once the server is back, the pool hands out the dead connections it held
idle and retries its own with a backoff that grows towards a minute, so requests went on
failing for ~35 s after the server had returned.

So each process keeps its own view of the server (`ServerState`):

- A connection the pool hands out is checked without a round trip: the socket of an idle
  connection has nothing to read unless the server closed it or said something, and only then
  does a real check (an empty query) decide.
- When that check fails, the pool times out, or a connection broke during a request, a
  connection of our own is tried (the probe, at most one per PROBE_SECONDS per process). If it
  fails the server is down: the pool is dropped (its dead connections, its backoff, and the
  callers waiting on it, who fail at once), and from then on a request fails at once as well,
  except that one every PROBE_SECONDS probes again. The first probe that connects ends the
  outage, and a new pool starts with fresh connections.
- A server that restarted while nothing used it is found by the first dead idle connection:
  the probe connects, so the pool is replaced (every connection it held is dead) and the
  request goes on with a fresh one.
- A new pool (at the process's start) probes before its first connection, so a process started
  while the server is down refuses at once as well.

Callers see django.db.OperationalError either way; `oversight.outage` answers it with a 503.
"""

from __future__ import annotations

import select
import threading
import time
import weakref
from typing import Any, ClassVar

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

# How often, at most, a process tries to connect while the server is down; so also how long
# after the server's return requests may still be refused.
PROBE_SECONDS = 1.0
# A probe waits this long for the server to answer (libpq's least is 2 s).
PROBE_CONNECT_TIMEOUT_SECONDS = 2

UNREACHABLE = "The database server did not answer the last connection attempt."


class ServerState:
    """Whether the server answered the last probe, and when that was (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down = False
        self._probed_at = -PROBE_SECONDS

    def answers(self, probe: Any) -> bool:
        """Probe unless another caller did within PROBE_SECONDS, in which case its answer
        stands: a thousand failing requests make one connection attempt a second, not a
        thousand."""
        now = time.monotonic()
        with self._lock:
            if now - self._probed_at < PROBE_SECONDS:
                return not self.down
            self._probed_at = now
        try:
            probe()
        except psycopg.Error:
            self.down = True
        else:
            self.down = False
        return not self.down


server = ServerState()
_pools_lock = threading.Lock()
# The pools that have handed out a working connection.
_proven: weakref.WeakSet[ConnectionPool[Any]] = weakref.WeakSet()


class DatabaseWrapper(base.DatabaseWrapper):
    # Django's pools, one per database alias, shared by every thread (not in django-stubs).
    _connection_pools: ClassVar[dict[str, ConnectionPool[Any]]]

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if server.down and not self._server_answers(conn_params):
            raise psycopg.OperationalError(UNREACHABLE)
        pool = self.pool
        if pool is None:
            return super().get_new_connection(conn_params)
        if pool not in _proven and not self._server_answers(conn_params):
            # A new pool (the process's first, or the next after an outage) would keep the
            # caller waiting its whole timeout for a server that is not there.
            raise psycopg.OperationalError(UNREACHABLE)
        try:
            connection = super().get_new_connection(conn_params)
        except psycopg.OperationalError:
            # The pool timed out or was closed under the caller: overloaded, or the server is
            # gone (then the pool is dropped, releasing whoever else waits on it).
            self._server_answers(conn_params)
            raise
        if _idle_connection_works(connection):
            _proven.add(pool)
            return connection
        pool.putconn(connection)  # the pool discards it
        if not self._server_answers(conn_params):
            raise psycopg.OperationalError(UNREACHABLE)
        # The server is back after a restart: every connection the pool held is as dead.
        _drop_pool(self, pool)
        connection = super().get_new_connection(conn_params)
        _proven.add(self.pool)
        return connection

    def _close(self) -> None:
        broken = self.pool is not None and self.connection is not None and self.connection.broken
        super()._close()  # type: ignore[misc]
        if broken:
            # The connection broke during the request: see whether the server is gone, so the
            # next requests fail at once instead of waiting on the pool.
            self._server_answers(self.get_connection_params())

    def _server_answers(self, conn_params: dict[str, Any]) -> bool:
        """Probe the server (see ServerState.answers); while it is down this process has no
        pool, so the next connection after its return is a fresh one."""
        params = {**conn_params, "connect_timeout": PROBE_CONNECT_TIMEOUT_SECONDS}
        answers = server.answers(lambda: self.Database.connect(**params).close())
        if not answers and (pool := self._connection_pools.get(self.alias)) is not None:
            _drop_pool(self, pool)
        return answers


def _idle_connection_works(connection: psycopg.Connection[Any]) -> bool:
    try:
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        if not poller.poll(0):
            return True  # nothing to read: nobody closed it
        ConnectionPool.check_connection(connection)
    except psycopg.Error:
        return False
    return True


def _drop_pool(wrapper: DatabaseWrapper, pool: ConnectionPool[Any]) -> None:
    """Forget `pool` (the next use of the database builds a new one) and close it in the
    background: closing waits for its worker threads, which may be in a connection attempt."""
    with _pools_lock:
        if wrapper._connection_pools.get(wrapper.alias) is not pool:
            return  # another thread dropped it already
        del wrapper._connection_pools[wrapper.alias]
    threading.Thread(target=pool.close, name="drop-database-pool", daemon=True).start()
