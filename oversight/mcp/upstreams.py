"""The upstream MCP servers the gateway fronts: one connection each, kept up for the gateway's
life, and made again when an upstream crashes or goes away.

Each `Upstream.run` owns its `mcp.Client` (a client's context must be entered and left in one
task). A call that finds the connection closed marks it lost; `run` then reconnects with a
growing pause, and calls meanwhile get `UpstreamUnavailable` at once rather than hanging.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp_types.jsonrpc import CONNECTION_CLOSED

from oversight.mcp.config import ServerSpec

logger = logging.getLogger("oversight.mcp")

# How long a call waits for an upstream that is (re)connecting before it gives up.
CONNECT_PATIENCE = 10.0
# An upstream that has not answered its handshake and tools/list by then is started again.
CONNECT_TIMEOUT = 30.0
# tools/list asks every upstream at once and lists what answered within this time (the rest:
# their last known tools).
LIST_TIMEOUT = 5.0
# The pause between reconnection attempts doubles from FIRST_PAUSE up to LAST_PAUSE.
FIRST_PAUSE, LAST_PAUSE = 0.2, 10.0
# A server that pages its tools list forever cannot hold the gateway.
MAX_TOOL_PAGES = 50


class UpstreamUnavailable(Exception):
    """The upstream could not be reached, or its connection broke during the call."""


class Upstream:
    def __init__(self, spec: ServerSpec, *, call_timeout: float) -> None:
        self.spec = spec
        self.call_timeout = call_timeout
        self._client: Client | None = None
        self._ready = anyio.Event()
        self._lost = anyio.Event()
        self._last_error = "not connected yet"
        self.tools: list[types.Tool] = []

    @property
    def name(self) -> str:
        return self.spec.name

    def _target(self) -> StdioServerParameters | str:
        if self.spec.url:
            return self.spec.url
        program, *args = self.spec.command
        if program in {"python", "python3"}:
            program = sys.executable  # the gateway's own interpreter, with its packages
        return StdioServerParameters(
            command=program, args=args, env=self.spec.env or None, cwd=self.spec.cwd
        )

    async def run(self) -> None:
        """Connect, and connect again whenever the connection is lost, until cancelled."""
        pause = FIRST_PAUSE
        while True:
            try:
                # The deadline covers the handshake and the first tools/list, and is lifted
                # once they are done: a server that never answers is started again.
                with anyio.CancelScope(deadline=anyio.current_time() + CONNECT_TIMEOUT) as scope:
                    async with Client(self._target(), cache=None) as client:
                        self.tools = await _all_tools(client)
                        scope.deadline = math.inf
                        self._client = client
                        self._ready.set()
                        logger.info("upstream %s connected: %d tools", self.name, len(self.tools))
                        pause = FIRST_PAUSE
                        await self._lost.wait()
                if scope.cancelled_caught:
                    self._last_error = f"no answer to the handshake within {CONNECT_TIMEOUT:g} s"
                    logger.warning("upstream %s unavailable: %s", self.name, self._last_error)
            except Exception as exc:  # any failure to connect: say so, then try again
                self._last_error = _describe(exc)
                logger.warning("upstream %s unavailable: %s", self.name, self._last_error)
            finally:
                self._client = None
                self._lost = anyio.Event()
                if self._ready.is_set():
                    self._ready = anyio.Event()
            await anyio.sleep(pause)
            pause = min(pause * 2, LAST_PAUSE)

    async def _connected(self, patience: float = CONNECT_PATIENCE) -> Client:
        with anyio.move_on_after(patience):
            await self._ready.wait()
        if self._client is None:
            raise UpstreamUnavailable(f"{self.name} is unavailable ({self._last_error})")
        return self._client

    def _lose(self, why: str) -> None:
        self._last_error = why
        self._client = None
        self._lost.set()

    async def list_tools(self) -> list[types.Tool]:
        """The upstream's tools now; the last known list if it is (re)connecting or slow."""
        try:
            client = await self._connected(patience=2.0)
        except UpstreamUnavailable:
            return self.tools
        try:
            with anyio.fail_after(LIST_TIMEOUT):
                self.tools = await _all_tools(client)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._lose(exc.message)
        except TimeoutError:
            logger.warning("upstream %s did not list its tools in time", self.name)
        return self.tools

    def lists(self, tool: str) -> bool:
        """Whether `tool` is one of the upstream's tools, by its exact name."""
        return any(known.name == tool for known in self.tools)

    async def call(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Forward one call. An upstream's own error answer (an MCPError other than a closed
        connection) is raised as it came; a broken connection or a timeout is
        `UpstreamUnavailable`."""
        client = await self._connected()
        try:
            with anyio.fail_after(self.call_timeout):
                return await client.call_tool(tool, arguments)
        except TimeoutError:
            # A wedged server answers nothing more: start it (or its session) again.
            why = f"{self.name} did not answer {tool} within {self.call_timeout:g} s"
            self._lose(why)
            raise UpstreamUnavailable(why) from None
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise
            self._lose(exc.message)
            raise UpstreamUnavailable(f"{self.name} closed the connection during {tool}") from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            self._lose(_describe(exc))
            why = self._last_error
            raise UpstreamUnavailable(f"{self.name} failed during {tool}: {why}") from None


async def _all_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
