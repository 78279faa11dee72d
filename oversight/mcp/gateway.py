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
import unicodedata
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import mcp_types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS

from oversight.mcp.agents import Agents, key_id
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
# A 2026-07-28 client has this long to come back with the state of its InputRequiredResult:
# the state is sealed (AES-GCM, this process's key), bound to the tool, its arguments and the
# agent, and good for one use.
STATE_TTL = 600.0
# While Oversight does not answer, a waiting call keeps asking (pausing up to MAX_PAUSE) until
# the request's own expiry, plus this margin; outcome reports retry for REPORT_PATIENCE.
EXPIRY_MARGIN = timedelta(seconds=60)
MAX_PAUSE = 15.0
REPORT_PATIENCE = 300.0
# A check waits at most this long for the agent's outcome reports still in flight (below).
SETTLE_SECONDS = 5.0

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
        self._resumed: dict[str, float] = {}  # request states used, by request id: when
        self._reporting: dict[str, int] = {}  # outcome reports in flight, by agent key id
        self._reported: dict[str, anyio.Event] = {}  # set when an agent's reports have landed
        self.server: Server[Any] = Server(
            "oversight-gateway",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )
        self.server.middleware.append(
            RequestStateBoundary(
                RequestStateSecurity.ephemeral(ttl=STATE_TTL), default_audience="oversight-gateway"
            )
        )

    # --- who is calling ---------------------------------------------------------------------

    def _caller(self, ctx: ServerRequestContext[Any, Any]) -> tuple[str, Oversight]:
        """The calling agent's key (named by its id) and its Oversight client."""
        key = self.stdio_key or bearer(getattr(ctx.request, "headers", None) or {})
        if not key:  # the HTTP front door refuses such requests before they get here
            raise MCPError(INVALID_PARAMS, "No agent API key: send Authorization: Bearer <key>.")
        return key_id(key), self.agents.client(key)

    # --- tools/list ---------------------------------------------------------------------------

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        _, agent = self._caller(ctx)
        try:
            known = await self.agents.run(agent.policies)
        except (OversightError, httpx.HTTPError) as exc:
            message = f"Oversight could not list this agent's policies: {exc}"
            raise MCPError(INTERNAL_ERROR, message) from None
        covered = {action_key(policy["name"]) for policy in known.get("policies", [])}
        unknown_denied = known.get("unknown_actions", "deny") == "deny"
        tools: dict[str, list[types.Tool]] = {}

        async def ask(upstream: Upstream) -> None:
            tools[upstream.name] = await upstream.list_tools()

        async with anyio.create_task_group() as asking:  # all at once: one slow server waits
            for upstream in self.upstreams.values():
                asking.start_soon(ask, upstream)
        listed: list[types.Tool] = []
        for upstream in self.upstreams.values():
            for tool in tools[upstream.name]:
                name = f"{upstream.name}.{tool.name}"
                if unknown_denied and action_key(self.config.action_for(name)) not in covered:
                    continue  # a certain deny: no policy covers it
                listed.append(tool.model_copy(update={"name": name}))
        return types.ListToolsResult(tools=listed)

    # --- tools/call ---------------------------------------------------------------------------

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        server, _, tool = params.name.partition(".")
        upstream = self.upstreams.get(server)
        # Only a tool the upstream lists, by its exact name: another spelling could be checked
        # as another action than the tool it reaches.
        if upstream is not None and tool and not upstream.lists(tool):
            await upstream.list_tools()  # it may be new
        if upstream is None or not tool or not upstream.lists(tool):
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
        key, agent = self._caller(ctx)
        action = self.config.action_for(params.name)
        arguments = dict(params.arguments or {})
        if params.request_state is not None:
            return await self._resume(ctx, key, agent, upstream, tool, action, params)

        await self._settle(key)
        try:
            decision = await self.agents.run(agent.check, action, arguments)
        except (OversightError, httpx.HTTPError) as exc:
            return unavailable(action, exc)
        if decision.allowed:
            return await self._forwarded(key, agent, upstream, tool, action, arguments, None)
        if decision.denied:
            return refused(action, "denied", decision.reasons, decision.violation_id)

        try:
            # Shielded: a request the caller stops waiting for is withdrawn below, so it must
            # be known even if the caller goes away while it is being opened.
            with anyio.CancelScope(shield=True):
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
            # A 2026-07-28 session: the client opens the page, then calls again with the state
            # (sealed by the RequestStateBoundary on its way out). A client that never comes
            # back leaves the request to expire.
            try:
                await anyio.lowlevel.checkpoint()
            except BaseException:
                await self._withdraw(agent, request.id)
                raise
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
            ctx, key, agent, upstream, tool, action, request, elicit=_elicits_urls(ctx)
        )

    async def _resume(
        self,
        ctx: ServerRequestContext[Any, Any],
        key: str,
        agent: Oversight,
        upstream: Upstream,
        tool: str,
        action: str,
        params: types.CallToolRequestParams,
    ) -> types.CallToolResult:
        """The second leg of a 2026-07-28 call. The boundary has checked the state: minted by
        this process, for this tool, these arguments and this agent, within STATE_TTL. It is
        used once: a retry after a lost answer must not run the call again."""
        state = str(params.request_state)
        try:
            uuid.UUID(state)
        except ValueError:
            raise MCPError(INVALID_PARAMS, "request_state names no approval request.") from None
        now = time.monotonic()
        for used in [r for r, at in self._resumed.items() if now - at > 2 * STATE_TTL]:
            del self._resumed[used]
        if state in self._resumed:
            raise MCPError(INVALID_PARAMS, "This request_state has been used already.")
        self._resumed[state] = now
        try:
            request = await self.agents.run(agent.get, state)
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
            await self._withdraw(agent, request.id)
            return tool_error(f"{action} was withdrawn: the approval page was declined.")
        return await self._decided_and_forwarded(
            ctx, key, agent, upstream, tool, action, request, elicit=False
        )

    async def _decided_and_forwarded(
        self,
        ctx: ServerRequestContext[Any, Any],
        key: str,
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
                asking.start_soon(self._elicit, ctx, agent, action, request, declined)
            try:
                decided = await self._decision(ctx, agent, request, declined)
            except BaseException as exc:
                # The caller is gone (cancelled, disconnected), or Oversight stayed away past
                # the request's expiry: withdraw the request, so that nobody approves a call
                # that will not be made.
                await self._withdraw(agent, request.id)
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
            return tool_error(f"Approval request {request.id} has been executed already.")
        arguments = decided.approved_params  # an approver's changes included, hash-checked
        self._executing.add(request.id)
        try:
            # An approval does not outlive a stop: a paused or disabled agent runs nothing.
            try:
                status = (await self.agents.run(agent.me)).get("status")
            except (OversightError, httpx.HTTPError) as exc:
                return unavailable(action, exc)
            if status != "active":
                return tool_error(f"{action} was not run: the agent is {status}.")
            return await self._forwarded(
                key, agent, upstream, tool, action, arguments, request.id, receipt=True
            )
        finally:
            self._executing.discard(request.id)

    async def _decision(
        self,
        ctx: ServerRequestContext[Any, Any],
        agent: Oversight,
        request: ApprovalRequest,
        declined: anyio.Event,
    ) -> ApprovalRequest:
        """Long-poll until the request is final, telling the client where to decide in between
        (its request timeout may restart on each progress notification). Oversight being away
        for a while is waited out, up to the request's expiry."""
        started = time.monotonic()
        message = f"Waiting for a person to decide {request.action}: {request.url}"
        give_up = _expiry(request) + EXPIRY_MARGIN
        current, failures = request, 0
        while not current.is_final:
            await ctx.session.report_progress(round(time.monotonic() - started, 1), None, message)
            wait = 1 if declined.is_set() else POLL_SECONDS
            try:
                current = await self.agents.run(agent.get, request.id, wait=wait)
                failures = 0
            except (OversightError, httpx.HTTPError) as exc:
                lasting = isinstance(exc, OversightError) and exc.status in {400, 401, 403, 404}
                if lasting or datetime.now(give_up.tzinfo) > give_up:
                    raise
                failures += 1
                logger.warning("waiting on %s: %s (asking again)", request.id, exc)
                await anyio.sleep(min(2.0**failures, MAX_PAUSE))
        return current

    async def _elicit(
        self,
        ctx: ServerRequestContext[Any, Any],
        agent: Oversight,
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
            await self._withdraw(agent, request.id)

    async def _withdraw(self, agent: Oversight, request_id: str) -> None:
        """Cancel a request nobody should decide any more, shielded, asking a few times. One
        that is final already (409) needs nothing."""
        with anyio.CancelScope(shield=True):
            for attempt in range(3):
                try:
                    await self.agents.run(agent.cancel, request_id)
                    return
                except OversightError as exc:
                    if exc.status < 500 and exc.status != 429:
                        return
                except httpx.HTTPError:
                    pass
                await anyio.sleep(1.0 + attempt)
            logger.warning("approval request %s could not be withdrawn", request_id)

    # --- forwarding and receipts --------------------------------------------------------------

    async def _forwarded(
        self,
        key: str,
        agent: Oversight,
        upstream: Upstream,
        tool: str,
        action: str,
        arguments: dict[str, Any],
        request_id: str | None,
        *,
        receipt: bool = False,
    ) -> types.CallToolResult:
        """Forward the call and report its outcome: an approved call's receipt before the answer
        (the call is complete only then), an allowed call's after it. A call the caller cancels
        mid-way is reported too: the upstream may have run it."""
        started = time.monotonic()
        self._reporting[key] = self._reporting.get(key, 0) + 1
        try:
            result, error = await self._forward(upstream, tool, arguments)
        except BaseException:
            why = "the caller cancelled the call while the upstream had it; its result is unknown"
            self.background.start_soon(
                self._report, key, agent, action, arguments, request_id, why, started
            )
            raise
        if receipt:
            with anyio.CancelScope(shield=True):
                await self._report(key, agent, action, arguments, request_id, error, started)
        else:
            self.background.start_soon(
                self._report, key, agent, action, arguments, request_id, error, started
            )
        return result

    async def _forward(
        self, upstream: Upstream, tool: str, arguments: dict[str, Any]
    ) -> tuple[types.CallToolResult, str | None]:
        """The upstream's answer and, if it failed, why (for the outcome report). Whatever goes
        wrong goes back to the client as a tool error: the call may have been made."""
        try:
            result = await upstream.call(tool, arguments)
        except UpstreamUnavailable as exc:
            return tool_error(f"The upstream server failed: {exc}"), str(exc)
        except MCPError as exc:
            message = f"{upstream.name} answered error {exc.code}: {exc.message}"
            return tool_error(message), message
        except Exception as exc:  # e.g. an answer the SDK refuses (not its declared schema)
            message = f"{upstream.name}'s answer to {tool} could not be used: {exc}"
            logger.warning("%s", message)
            return tool_error(message), message
        if result.is_error:
            return result, _text(result) or "the tool reported an error"
        return result, None

    async def _report(
        self,
        key: str,
        agent: Oversight,
        action: str,
        arguments: dict[str, Any],
        request_id: str | None,
        error: str | None,
        started: float,
    ) -> None:
        """Report the outcome (for an approved call, its execution receipt), asking again while
        Oversight is away (one Idempotency-Key: it is recorded once). A report that cannot be
        made is logged: the call has been made and its answer stands."""
        idempotency_key = str(uuid.uuid4())
        duration_ms = int((time.monotonic() - started) * 1000)
        give_up = time.monotonic() + REPORT_PATIENCE
        try:
            for attempt in range(1000):
                try:
                    await self.agents.run(
                        agent.report_outcome,
                        action,
                        arguments,
                        success=error is None,
                        error=(error or "")[:MAX_ERROR],
                        approval_request_id=request_id,
                        duration_ms=duration_ms,
                        idempotency_key=idempotency_key,
                    )
                    return
                except (OversightError, httpx.HTTPError) as exc:
                    passing = (
                        isinstance(exc, httpx.HTTPError)
                        or exc.status in {0, 429}
                        or (exc.status >= 500)
                    )
                    if not passing or time.monotonic() > give_up:
                        logger.warning("the outcome of %s was not reported: %s", action, exc)
                        return
                    await anyio.sleep(min(2.0**attempt, MAX_PAUSE))
        finally:
            self._reporting[key] -= 1
            if not self._reporting[key]:
                del self._reporting[key]
                self._reported.pop(key, anyio.Event()).set()

    async def _settle(self, key: str) -> None:
        """Let the agent's outcome reports in flight land before its next check (up to
        SETTLE_SECONDS): the check's loop detection counts repeats "without a success in
        between" (SPEC §6), and a success still on its way would not count."""
        if not self._reporting.get(key):
            return
        landed = self._reported.setdefault(key, anyio.Event())
        with anyio.move_on_after(SETTLE_SECONDS):
            await landed.wait()


# --- answers -----------------------------------------------------------------------------------


def bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("authorization", "") or headers.get("Authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def action_key(action: str) -> str:
    """An action's name as Oversight looks it up (guardrails.rules.action_key)."""
    return unicodedata.normalize("NFKC", action).casefold()


def _expiry(request: ApprovalRequest) -> datetime:
    return datetime.fromisoformat(str(request.raw["expires_at"]).replace("Z", "+00:00"))


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
    """Oversight did not answer, or refused the agent itself (paused, disabled)."""
    if isinstance(exc, OversightError) and exc.code in {"agent_paused", "agent_disabled"}:
        status = exc.code.removeprefix("agent_")
        return tool_error(
            f"{action} was not run: the agent is {status} ({exc.message}).",
            {"decision": "deny", "reasons": [{"code": exc.code, "message": exc.message}]},
        )
    return tool_error(
        f"{action} was not run: Oversight could not decide it ({exc}).",
        {"decision": "unavailable"},
    )
