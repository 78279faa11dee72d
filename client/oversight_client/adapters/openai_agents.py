"""Oversight for the OpenAI Agents SDK (`pip install "oversight-client[openai-agents]"`).

    from agents import Agent, function_tool
    from oversight_client import Oversight
    from oversight_client.adapters.openai_agents import OversightApprovals, run_with_oversight

    approvals = OversightApprovals(Oversight(URL, api_key=KEY), actions={"shell": "run_command"})

    @function_tool
    def shell(command: str) -> str:
        ...

    agent = Agent(name="ops", instructions="...", tools=[approvals.protect(shell)])
    result = await run_with_oversight(agent, "Free some disk space on web-1.", oversight=approvals)

What happens to a call of a protected tool:

- The tool's `needs_approval` asks Oversight's guardrails (`check`). Allowed: the tool runs at
  once. Otherwise the run pauses on the call (an interruption), a deny included: the SDK has no
  way for `needs_approval` to refuse a call, only to hold it for a decision.
- `resolve` (which `run_with_oversight` calls) answers the run's interruptions: a call the
  guardrails refused is rejected with their reasons, without asking anyone; any other is put to
  a person as an approval request, all of them at once, and waited for. The SDK is told with
  `RunState.approve` / `RunState.reject(..., rejection_message=...)`: a rejection's text (the
  reviewer's reason) is the tool's answer the model reads next.
- An approved call runs with the approved arguments. The SDK binds an approval to the arguments
  the model sent and offers no way to change them, so a protected tool's invoker does it: it
  runs the tool with the arguments the approver set, and tells the model so before the result
  (a string result; other outputs go through unchanged).
- When a protected tool ends, its execution receipt is sent (`report_outcome`): the arguments it
  ran with and the approval request, so Oversight checks that what ran is what was approved.

`needs_approval(tool)` is the gate alone, for a tool you do not want wrapped: its approved calls
run as the model made them, so an approval with changed arguments cannot be applied. `resolve`
then rejects the call and tells the model which arguments were approved (calling again asks
again), and no receipts are sent for it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

# The SDK's package is `agents`, the name of a Django app of this repository, which shadows it in
# the repository's tree: there mypy sees these names as unknown and ruff sorts them apart (its
# tests run the SDK in a process of its own).
from agents.tool_context import ToolContext  # type: ignore[import-not-found, unused-ignore]

from agents import (  # type: ignore[attr-defined, unused-ignore]
    Agent,
    FunctionTool,
    ItemHelpers,
    MessageOutputItem,
    RunContextWrapper,
    Runner,
    RunResult,
    RunResultStreaming,
    RunState,
    ToolApprovalItem,
)
from oversight_client import Oversight, _describe, _elapsed_ms
from oversight_client.adapters._common import (
    Memory,
    OversightAdapter,
    ToolCall,
    Verdict,
    canonical,
    clip,
    edit_notice,
    not_applied,
    refused,
)
from oversight_client.answers import Decision

__all__ = ["OversightApprovals", "run_with_oversight", "run_with_oversight_sync"]

NeedsApproval = Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]

NOT_AN_OBJECT = "Oversight: this call's arguments are not a JSON object, so the tool did not run."
NOT_CLEARED = (
    "Oversight: this call was not cleared (no approval was recorded for it, and the guardrails "
    "do not allow it on their own), so the tool did not run."
)


class OversightApprovals(OversightAdapter):
    """Puts an OpenAI Agents SDK agent's tool calls under Oversight: `protect` a tool (or give
    it `needs_approval(tool)`), run with `run_with_oversight`, or answer a paused run yourself
    with `resolve`. The settings are `OversightAdapter`'s.

    It remembers each call between its gate, its decision and its execution, so the object
    that protects a tool must be the one that resolves its run (as `run_with_oversight` does),
    in the same process.
    """

    def __init__(self, oversight: Oversight, **settings: Any) -> None:
        super().__init__(oversight, **settings)
        # The guardrails' answers from the gate (None: they could not be asked), by call.
        self._checked: Memory[Decision | None] = Memory()
        # Approved calls of protected tools, for their invokers: the arguments to run with.
        self._cleared: Memory[Verdict] = Memory()

    def needs_approval(self, tool: str) -> NeedsApproval:
        """The gate for the tool named `tool`, for `function_tool(needs_approval=...)`: pause
        the call unless the guardrails allow it. (`protect` sets it for you.)"""
        return self._gate(tool, remember_allowed=False)

    def protect(self, tool: FunctionTool) -> FunctionTool:
        """Put `tool` under Oversight, in place, and return it: its `needs_approval` becomes the
        gate (replacing any of its own), and its invoker runs approved calls with the approved
        arguments and sends each call's receipt. Protecting a tool twice does nothing more."""
        if isinstance(tool.on_invoke_tool, _Overseen):
            return tool
        tool.needs_approval = self._gate(tool.name, remember_allowed=True)
        tool.on_invoke_tool = _Overseen(
            self, tool.name, self.action_for(tool.name), tool.on_invoke_tool
        )
        return tool

    async def resolve(self, result: RunResult | RunResultStreaming) -> RunState[Any]:
        """Answer the interruptions of a paused run from Oversight and return the state to
        resume it with: `await Runner.run(agent, state)`.

        Calls the guardrails refused are rejected with their reasons; the others are put to
        people (all at once) and each is approved or rejected as they decide, with their reason
        as the tool's answer. It returns when every call is decided (or `timeout` passed)."""
        state = result.to_state()
        context = _context_of(result)
        verdicts: dict[int, Verdict] = {}
        to_ask: list[tuple[int, ToolCall]] = []
        items = list(result.interruptions)
        for index, item in enumerate(items):
            tool = item.tool_name or item.name or "tool"
            params = _arguments_of(item)
            call = ToolCall(tool, self.action_for(tool), params or {}, context=context)
            if params is None:
                verdicts[index] = refused(call, NOT_AN_OBJECT)
                continue
            decision = self._checked.pop(_key(item, params))
            verdict = self.verdict_of_check(call, decision)
            if verdict is None:
                to_ask.append((index, call))
            else:
                verdicts[index] = verdict
        decided = await asyncio.to_thread(self.decide, [call for _, call in to_ask])
        verdicts.update(zip((index for index, _ in to_ask), decided, strict=True))

        for index, item in enumerate(items):
            verdict = verdicts[index]
            overseen = _overseen_tool(item)
            if verdict.runs and verdict.changed and overseen is None:
                verdict = not_applied(verdict)
            if not verdict.runs:
                state.reject(item, rejection_message=verdict.message)
                continue
            if overseen is not None:
                overseen.owner._cleared.put(_key(item, verdict.call.params), verdict)
            state.approve(item)
        return state

    def _gate(self, tool: str, *, remember_allowed: bool) -> NeedsApproval:
        action = self.action_for(tool)

        async def needs_approval(
            context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
        ) -> bool:
            decision = await asyncio.to_thread(self.check, ToolCall(tool, action, params))
            pause = decision is None or not decision.allowed
            # Remembered for `resolve` (a deny's reasons) and for the invoker (an allow).
            if pause or remember_allowed:
                self._checked.put((call_id, canonical(params)), decision)
            return pause

        return needs_approval

    async def _clearance(self, call: ToolCall, call_id: str) -> Verdict:
        """What a protected tool's invoker does with a call: the approval `resolve` recorded, or
        the gate's allow; else (the run resumed elsewhere, or approved by hand) the guardrails
        are asked now, and only an allow lets it run."""
        key = (call_id, canonical(call.params))
        verdict = self._cleared.pop(key)
        if verdict is not None:
            return verdict
        decision = self._checked.pop(key)
        if decision is None:
            decision = await asyncio.to_thread(self.check, call)
        verdict = self.verdict_of_check(call, decision)
        return verdict if verdict is not None else refused(call, NOT_CLEARED)


class _Overseen:
    """A protected tool's invoker (`FunctionTool.on_invoke_tool`): runs a call only when
    Oversight cleared it, with the cleared arguments, and sends its receipt."""

    def __init__(
        self,
        owner: OversightApprovals,
        tool: str,
        action: str,
        invoke: Callable[[ToolContext[Any], str], Awaitable[Any]],
    ) -> None:
        self.owner = owner
        self.tool = tool
        self.action = action
        self.invoke = invoke

    async def __call__(self, context: ToolContext[Any], arguments: str) -> Any:
        params = _parse(arguments)
        if params is None:
            return NOT_AN_OBJECT
        call = ToolCall(self.tool, self.action, params)
        verdict = await self.owner._clearance(call, context.tool_call_id)
        if not verdict.runs:
            return verdict.message
        started = time.monotonic()
        try:
            output = await self.invoke(
                context, json.dumps(verdict.params) if verdict.changed else arguments
            )
        except Exception as exc:
            await asyncio.to_thread(
                self.owner.report,
                verdict,
                success=False,
                error=_describe(exc),
                duration_ms=_elapsed_ms(started),
            )
            raise
        # A tool error the SDK turned into the tool's answer (its failure_error_function) looks
        # like any answer here: it is reported as a success.
        await asyncio.to_thread(
            self.owner.report, verdict, success=True, duration_ms=_elapsed_ms(started)
        )
        if verdict.changed and isinstance(output, str):
            return f"{edit_notice(verdict)}\n\n{output}"
        return output


async def run_with_oversight(
    agent: Agent[Any],
    input: str | list[Any],
    *,
    oversight: Oversight | OversightApprovals,
    **run_options: Any,
) -> RunResult:
    """Run `agent` to the end under Oversight: each time the run pauses on tool calls, resolve
    them from Oversight's decisions (`OversightApprovals.resolve`) and resume. `run_options` go
    to every `Runner.run` (`max_turns`, `run_config`, `hooks`, ...). Pass the
    `OversightApprovals` that protects the agent's tools."""
    approvals = (
        oversight if isinstance(oversight, OversightApprovals) else OversightApprovals(oversight)
    )
    result = await Runner.run(agent, input, **run_options)
    while result.interruptions:
        state = await approvals.resolve(result)
        result = await Runner.run(agent, state, **run_options)
    return result


def run_with_oversight_sync(
    agent: Agent[Any],
    input: str | list[Any],
    *,
    oversight: Oversight | OversightApprovals,
    **run_options: Any,
) -> RunResult:
    """`run_with_oversight` for code without an event loop."""
    return asyncio.run(run_with_oversight(agent, input, oversight=oversight, **run_options))


# --- helpers --------------------------------------------------------------------------------------


def _parse(arguments: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _arguments_of(item: ToolApprovalItem) -> dict[str, Any] | None:
    """A paused call's arguments (a function call's JSON, an MCP approval's), or None."""
    raw = item.raw_item
    arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    if isinstance(arguments, dict):
        return arguments
    return _parse(arguments) if isinstance(arguments, str) else None


def _call_id(item: ToolApprovalItem) -> str:
    raw = item.raw_item
    for name in ("call_id", "id"):
        value = raw.get(name) if isinstance(raw, dict) else getattr(raw, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _key(item: ToolApprovalItem, params: dict[str, Any]) -> tuple[str, str]:
    return (_call_id(item), canonical(params))


def _overseen_tool(item: ToolApprovalItem) -> _Overseen | None:
    """The invoker of the paused call's tool, if `protect` wrapped it."""
    for tool in getattr(item.agent, "tools", ()):
        if isinstance(tool, FunctionTool) and tool.name == item.tool_name:
            invoker = tool.on_invoke_tool
            return invoker if isinstance(invoker, _Overseen) else None
    return None


def _context_of(result: RunResult | RunResultStreaming) -> str:
    """What the approver should know of the run: what the agent said last, and its task."""
    parts = []
    said = [
        ItemHelpers.text_message_output(item)
        for item in result.new_items
        if isinstance(item, MessageOutputItem)
    ]
    if said and said[-1].strip():
        parts.append(f'It said: "{clip(said[-1])}"')
    if isinstance(result.input, str) and result.input.strip():
        parts.append(f'Its task: "{clip(result.input)}"')
    return "\n".join(parts)
