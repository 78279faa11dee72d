"""The gateway: an MCP server whose tools are the upstreams' tools, each call checked by Oversight.

`tools/call` (SPEC §13): the call is checked as the calling agent (§6) with the tool's action
name and its arguments as the params.

- allow: forwarded; its outcome is reported after the answer is on its way.
- deny: a tool error (`isError`) whose text carries the reason codes; never forwarded.
- require approval: an approval request is opened and the client is told where a person
  decides: by URL-mode elicitation when the client supports it (a server-to-client request on a
  2025-11-25 session; an `InputRequiredResult` on a 2026-07-28 one, which the client answers
  by calling again with the echoed state), else by progress notifications naming the page.
  The call waits, then forwards the approved arguments (an approver's changes included) and
  reports the execution receipt; rejected, expired or cancelled gives a tool error saying which.

If Oversight cannot be reached the call is not forwarded (fail closed). `tools/list` lists the
upstreams' tools as `<server>.<tool>`, leaving out those Oversight would certainly refuse: no
policy covers their action and unknown actions are denied.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import httpx
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS

from oversight.mcp.agents import Agents
from oversight.mcp.config import GatewayConfig
from oversight.mcp.upstreams import Upstream, UpstreamUnavailable
from oversight_client import (
    ApprovalRequest,
    Oversight,
    OversightError,
    Reason,
    __version__,
)

logger = logging.getLogger("oversight.mcp")

# The key of the approval's URL elicitation in an InputRequiredResult (2026-07-28 sessions).
APPROVAL_INPUT = "oversight_approval"
# One long-poll of the decision lasts this long; between two, the client hears progress.
POLL_SECONDS = 20
# What the outcome report keeps of an upstream's error text (controls.outcomes.MAX_ERROR).
MAX_ERROR = 2000

INSTRUCTIONS = (
    "Tools are named <server>.<tool>. Every call is checked by Oversight: some run at once, "
    "some are refused with the reasons, and some wait until a person approves them on the "
    "page this gateway names."
)


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        upstreams: list[Upstream],
        agents: Agents,
        background: anyio.abc.TaskGroup,
        *,
        stdio_key: str | None = None,
    ) -> None:
        self.config = config
        self.upstreams = {upstream.name: upstream for upstream in upstreams}
        self.agents = agents
        self.background = background  # outcome reports that outlive their call
        self.stdio_key = stdio_key
        self._executing: set[str] = set()  # approval requests being forwarded now
        self.server: Server[Any] = Server(
            "oversight-gateway",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    # --- who is calling ---------------------------------------------------------------------

    def _agent(self, ctx: ServerRequestContext[Any, Any]) -> Oversight:
        key = self.stdio_key or bearer(getattr(ctx.request, "headers", None) or {})
        if not key:  # the HTTP front door refuses such requests before they get here
            raise MCPError(INVALID_PARAMS, "No agent API key: send Authorization: Bearer <key>.")
        return self.agents.client(key)

    # --- tools/list ---------------------------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        agent = self._agent(ctx)
        try:
            known = await self.agents.run(agent.policies)
        except (OversightError, httpx.HTTPError) as exc:
            message = f"Oversight could not list this agent's policies: {exc}"
            raise MCPError(INTERNAL_ERROR, message) from None
        covered = {policy["name"] for policy in known.get("policies", [])}
        unknown_denied = known.get("unknown_actions", "deny") == "deny"
        listed: list[types.Tool] = []
        for upstream in self.upstreams.values():
            for tool in await upstream.list_tools():
                name = f"{upstream.name}.{tool.name}"
                if unknown_denied and self.config.action_for(name) not in covered:
                    continue  # a certain deny: no policy covers it
                listed.append(tool.model_copy(update={"name": name}))
        return types.ListToolsResult(tools=listed)

    # --- tools/call ---------------------------------------------------------------------------

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        server, _, tool = params.name.partition(".")
        upstream = self.upstreams.get(server)
        if upstream is None or not tool:
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
        agent = self._agent(ctx)
        action = self.config.action_for(params.name)
        arguments = dict(params.arguments or {})
        if params.request_state is not None:
            return await self._resume(ctx, agent, upstream, tool, action, params)

        try:
            decision = await self.agents.run(agent.check, action, arguments)
        except (OversightError, httpx.HTTPError) as exc:
            return unavailable(action, exc)
        if decision.allowed:
            started = time.monotonic()
            result, error = await self._forward(upstream, tool, arguments)
            self.background.start_soon(self._report, agent, action, arguments, None, error, started)
            return result
        if decision.denied:
            return refused(action, "denied", decision.reasons, decision.violation_id)

        try:
            request = await self.agents.run(
                agent.request_approval,
                action,
                arguments,
                justification=f"MCP tool call {params.name} through the Oversight gateway.",
                urgency=self.config.urgency,
                risk_level=self.config.risk_level,
            )
        except OversightError as exc:
            if exc.status == 403 and "reasons" in exc.details:
                reasons = tuple(Reason.from_json(r) for r in exc.details["reasons"])
                return refused(action, "denied", reasons, exc.details.get("violation_id"))
            return unavailable(action, exc)
        except httpx.HTTPError as exc:
            return unavailable(action, exc)

        if not ctx.session.can_send_request and _elicits_urls(ctx):
            # A 2026-07-28 session: the client opens the page, then calls again with the state.
            return types.InputRequiredResult(
                input_requests={
                    APPROVAL_INPUT: types.ElicitRequest(
                        params=types.ElicitRequestURLParams(
                            message=_asking(action, request),
                            url=request.url,
                            elicitation_id=request.id,
                        )
                    )
                },
                request_state=request.id,
            )
        return await self._decided_and_forwarded(
            ctx, agent, upstream, tool, action, request, elicit=_elicits_urls(ctx)
        )

    async def _resume(
        self,
        ctx: ServerRequestContext[Any, Any],
        agent: Oversight,
        upstream: Upstream,
        tool: str,
        action: str,
        params: types.CallToolRequestParams,
    ) -> types.CallToolResult:
        """The second leg of a 2026-07-28 call: the state names the agent's own approval request
        (the key only reads its own), for this action, never executed before."""
        try:
            request = await self.agents.run(agent.get, str(params.request_state))
        except OversightError as exc:
            if exc.status in {400, 404}:
                raise MCPError(INVALID_PARAMS, "request_state names no approval request.") from None
            return unavailable(action, exc)
        except httpx.HTTPError as exc:
            return unavailable(action, exc)
        if request.action != action:
            raise MCPError(INVALID_PARAMS, "request_state is for another tool.")
        answer = (params.input_responses or {}).get(APPROVAL_INPUT)
        if isinstance(answer, types.ElicitResult) and answer.action != "accept":
            return await self._withdrawn(agent, action, request)
        return await self._decided_and_forwarded(
            ctx, agent, upstream, tool, action, request, elicit=False
        )

    async def _decided_and_forwarded(
        self,
        ctx: ServerRequestContext[Any, Any],
        agent: Oversight,
        upstream: Upstream,
        tool: str,
        action: str,
        request: ApprovalRequest,
        *,
        elicit: bool,
    ) -> types.CallToolResult:
        declined = anyio.Event()
        async with anyio.create_task_group() as asking:
            if elicit:
                asking.start_soon(self._elicit, ctx, action, request, declined)
            try:
                decided = await self._decision(ctx, agent, request, declined)
            except BaseException as exc:
                # The caller is gone (cancelled, disconnected) or Oversight is: withdraw the
                # request, so that nobody approves a call that will not be made.
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await self.agents.run(agent.cancel, request.id)
                if isinstance(exc, OversightError | httpx.HTTPError):
                    return unavailable(action, exc)
                raise
            finally:
                asking.cancel_scope.cancel()
        if elicit:
            with contextlib.suppress(Exception):
                await ctx.session.send_elicit_complete(request.id, ctx.request_id)
        if declined.is_set() and decided.status == "cancelled":
            return tool_error(f"{action} was withdrawn: the approval page was declined.")
        if not decided.approved:
            return not_approved(action, decided)
        if decided.raw.get("receipt") or request.id in self._executing:
            return tool_error(f"Approval request {request.id} has already been executed.")
        arguments = decided.approved_params  # an approver's changes included, hash-checked
        self._executing.add(request.id)
        try:
            started = time.monotonic()
            result, error = await self._forward(upstream, tool, arguments)
            # The execution receipt is sent before the answer: the call is complete only then.
            await self._report(agent, action, arguments, request.id, error, started)
        finally:
            self._executing.discard(request.id)
        return result

    async def _decision(
        self,
        ctx: ServerRequestContext[Any, Any],
        agent: Oversight,
        request: ApprovalRequest,
        declined: anyio.Event,
    ) -> ApprovalRequest:
        """Long-poll until the request is final, telling the client where to decide in between
        (its request timeout may restart on each progress notification)."""
        started = time.monotonic()
        message = f"Waiting for a person to decide {request.action}: {request.url}"
        current = request
        while not current.is_final:
            await ctx.session.report_progress(round(time.monotonic() - started, 1), None, message)
            wait = 1 if declined.is_set() else POLL_SECONDS
            current = await self.agents.run(agent.get, request.id, wait=wait)
        return current

    async def _elicit(
        self,
        ctx: ServerRequestContext[Any, Any],
        action: str,
        request: ApprovalRequest,
        declined: anyio.Event,
    ) -> None:
        """Ask the client to open the request page (URL mode). Declining withdraws the request;
        accepting only means the page was shown: the decision is still the approver's."""
        try:
            answer = await ctx.session.elicit_url(
                _asking(action, request), request.url, request.id, related_request_id=ctx.request_id
            )
        except Exception as exc:  # no answer from the client: progress notifications remain
            logger.info("URL elicitation for %s was not answered: %s", request.id, exc)
            return
        if answer.action != "accept":
            declined.set()
            with contextlib.suppress(OversightError, httpx.HTTPError):
                await self.agents.run(self._agent(ctx).cancel, request.id)

    async def _withdrawn(
        self, agent: Oversight, action: str, request: ApprovalRequest
    ) -> types.CallToolResult:
        with contextlib.suppress(OversightError, httpx.HTTPError):
            await self.agents.run(agent.cancel, request.id)
        return tool_error(f"{action} was withdrawn: the approval page was declined.")

    # --- forwarding and receipts --------------------------------------------------------------

    async def _forward(
        self, upstream: Upstream, tool: str, arguments: dict[str, Any]
    ) -> tuple[types.CallToolResult, str | None]:
        """The upstream's answer and, if it failed, why (for the outcome report). An upstream's
        protocol error goes back to the client as a tool error too: the call was made."""
        try:
            result = await upstream.call(tool, arguments)
        except UpstreamUnavailable as exc:
            return tool_error(f"The upstream server failed: {exc}"), str(exc)
        except MCPError as exc:
            message = f"{upstream.name} answered error {exc.code}: {exc.message}"
            return tool_error(message), message
        if result.is_error:
            return result, _text(result) or "the tool reported an error"
        return result, None

    async def _report(
        self,
        agent: Oversight,
        action: str,
        arguments: dict[str, Any],
        request_id: str | None,
        error: str | None,
        started: float,
    ) -> None:
        """Report the outcome (for an approved call, its execution receipt). A report that
        cannot be made is logged: the call has been made and its answer stands."""
        try:
            await self.agents.run(
                agent.report_outcome,
                action,
                arguments,
                success=error is None,
                error=(error or "")[:MAX_ERROR],
                approval_request_id=request_id,
                duration_ms=int((time.monotonic() - started) * 1000),
            )
        except (OversightError, httpx.HTTPError) as exc:
            logger.warning("the outcome of %s was not reported: %s", action, exc)


# --- answers -----------------------------------------------------------------------------------


def bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("authorization", "") or headers.get("Authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _elicits_urls(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.elicitation and capabilities.elicitation.url)


def _asking(action: str, request: ApprovalRequest) -> str:
    return f"Oversight: a person must approve {action} before it runs. Decide at {request.url}"


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


def tool_error(text: str, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        is_error=True,
        _meta={"oversight": meta} if meta else None,
    )


def refused(
    action: str, what: str, reasons: tuple[Reason, ...], violation_id: int | None
) -> types.CallToolResult:
    codes = ", ".join(reason.code for reason in reasons) or "no reason given"
    details = " ".join(reason.message for reason in reasons)
    return tool_error(
        f"Oversight {what} {action} ({codes}). {details}".strip(),
        {
            "decision": "deny",
            "reasons": [{"code": r.code, "message": r.message} for r in reasons],
            "violation_id": violation_id,
        },
    )


def not_approved(action: str, request: ApprovalRequest) -> types.CallToolResult:
    decision = request.decision or {}
    reason = decision.get("reason") or ""
    by = decision.get("decided_by")
    if request.status == "rejected":
        text = f"Rejected{f' by {by}' if by else ''}: {reason}" if reason else "Rejected."
    elif request.status == "expired":
        text = f"Expired: {reason or 'nobody decided before the time limit.'}"
    else:
        text = f"Cancelled: {reason}" if reason else "Cancelled."
    return tool_error(
        f"{action} was not run. {text}",
        {"decision": request.status, "request_id": request.id, "reason": reason},
    )


def unavailable(action: str, exc: Exception) -> types.CallToolResult:
    return tool_error(
        f"{action} was not run: Oversight could not decide it ({exc}).",
        {"decision": "unavailable"},
    )
