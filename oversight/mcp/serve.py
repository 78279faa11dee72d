"""Running the gateway: over streamable HTTP (`/mcp`, each request with an agent's key as its
Bearer token) or over stdio (the key in OVERSIGHT_API_KEY), with the upstreams' connections
and the outcome reports in one task group that outlives every call."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.stdio import stdio_server
from starlette.applications import Starlette

from oversight.mcp.agents import Agents, OversightUnavailable, key_id
from oversight.mcp.config import GatewayConfig
from oversight.mcp.gateway import Gateway, bearer
from oversight.mcp.upstreams import Upstream

logger = logging.getLogger("oversight.mcp")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# On shutdown, outcome reports still being sent get this long to finish.
DRAIN_SECONDS = 10.0


class StartupError(Exception):
    """The gateway cannot start (a stdio key Oversight refuses, Oversight unreachable)."""


async def serve(config: GatewayConfig, *, stdio: bool = False) -> None:
    upstreams = [
        Upstream(spec, call_timeout=config.call_timeout) for spec in config.servers.values()
    ]
    agents = Agents(config.oversight_url)
    try:
        async with anyio.create_task_group() as connections:
            for upstream in upstreams:
                connections.start_soon(upstream.run)
            async with anyio.create_task_group() as reports:
                if stdio:
                    await _serve_stdio(config, upstreams, agents, reports)
                else:
                    await _serve_http(config, upstreams, agents, reports)
                # Leaving this block waits for the outcome reports still in flight.
                reports.cancel_scope.deadline = anyio.current_time() + DRAIN_SECONDS
            connections.cancel_scope.cancel()
    finally:
        agents.close()


async def _serve_stdio(
    config: GatewayConfig, upstreams: list[Upstream], agents: Agents, reports: Any
) -> None:
    key = os.environ.get("OVERSIGHT_API_KEY", "")
    if not key:
        raise StartupError("Set OVERSIGHT_API_KEY to the agent's API key to serve over stdio.")
    try:
        agent = await agents.whoami(key)
    except OversightUnavailable as exc:
        raise StartupError(str(exc)) from None
    if agent is None:
        raise StartupError("Oversight refused OVERSIGHT_API_KEY (401): not an agent's live key.")
    logger.info("serving agent %s over stdio", agent.get("name"))
    gateway = Gateway(config, upstreams, agents, reports, stdio_key=key)
    async with stdio_server() as (read, write):
        await gateway.server.run(read, write, gateway.server.create_initialization_options())


async def _serve_http(
    config: GatewayConfig, upstreams: list[Upstream], agents: Agents, reports: Any
) -> None:
    gateway = Gateway(config, upstreams, agents, reports)
    app = http_app(gateway, host=config.host)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    )
    logger.info("serving MCP at http://%s:%d/mcp", config.host, config.port)
    await server.serve()


def http_app(gateway: Gateway, *, host: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    mcp_app: Starlette = gateway.server.streamable_http_app(host=host)
    return AgentKeys(AuthContextMiddleware(mcp_app), gateway.agents)


class AgentKeys:
    """The HTTP front door: every request carries one key Oversight accepts, else 401 (503 when
    Oversight cannot say). `/healthz` answers without one.

    The agent becomes the request's user, as the SDK's own bearer authentication would make
    it: a session then answers only to the key that opened it (the SDK's session owner check),
    and a request state only to the agent it was minted for."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], agents: Agents):
        self.app = app
        self.agents = agents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/healthz":
            await _answer(send, 200, {"status": "ok"})
            return
        given = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"]
        if len(given) > 1:
            await _answer(send, 400, {"error": "Send one Authorization header."})
            return
        key = bearer({"authorization": given[0]} if given else {})
        if not key:
            await _answer(send, 401, {"error": "Send an agent API key: Authorization: Bearer."})
            return
        try:
            agent = await self.agents.whoami(key)
        except OversightUnavailable as exc:
            await _answer(send, 503, {"error": str(exc)})
            return
        if agent is None:
            await _answer(send, 401, {"error": "Oversight does not accept this API key."})
            return
        token = AccessToken(token=key, client_id=key_id(key), scopes=[], subject=str(agent["id"]))
        await self.app({**scope, "user": AuthenticatedUser(token)}, receive, send)


async def _answer(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="oversight"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
