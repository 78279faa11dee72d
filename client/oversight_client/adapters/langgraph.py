"""Oversight for LangChain v1 / LangGraph agents (`pip install "oversight-client[langgraph]"`).

    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver
    from oversight_client import Oversight
    from oversight_client.adapters.langgraph import OversightReviewer, run_with_oversight

    reviewer = OversightReviewer(Oversight(URL, api_key=KEY), actions={"shell": "run_command"})
    agent = create_agent(
        model, tools=[shell, read_file],
        middleware=reviewer.middleware(["shell", "read_file"]),
        checkpointer=InMemorySaver(),          # interrupts need one
    )
    result = run_with_oversight(
        agent, {"messages": [{"role": "user", "content": "Free some disk space."}]},
        {"configurable": {"thread_id": "ops-1"}}, oversight=reviewer,
    )

How it maps: LangChain's `HumanInTheLoopMiddleware` pauses the graph on the calls of the tools
it reviews (an interrupt whose value is a HITL request: `action_requests` with a tool's name and
arguments, `review_configs` with the decisions allowed; in `per_call` mode one interrupt per
call). Its `when` predicate, `OversightReviewer.when`, asks Oversight's guardrails first, so an
allowed call runs without a pause. `resume` answers the interrupts: a call the guardrails refused
is rejected with their reasons without asking anyone; the others are put to people as approval
requests (all at once) and each decision becomes the interrupt's answer:

- approved: `approve`; approved with changed arguments: `edit`, the approver's arguments as the
  `edited_action` (the middleware runs the tool with them and tells the model so); if the tool's
  review does not allow `edit`, `reject`, telling the model which arguments were approved;
- rejected, expired or withdrawn: `reject`, with a message (the reviewer's reason) that the model
  reads as the tool's answer.

`receipts()` (in `middleware()`, after the HITL middleware) sends each cleared call's execution
receipt when its tool ends: the arguments it ran with and its approval request, so Oversight
checks that what ran is what was approved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import (
    AgentMiddleware,
    HumanInTheLoopMiddleware,
    InterruptOnConfig,
    ToolCallRequest,
)
from langchain.agents.middleware.human_in_the_loop import DecisionType, InterruptMode
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt

from oversight_client import Oversight, _describe, _elapsed_ms
from oversight_client.adapters._common import (
    Memory,
    OversightAdapter,
    Verdict,
    canonical,
    clip,
    not_applied,
    refused,
)
from oversight_client.adapters._common import (
    ToolCall as OverseenCall,
)
from oversight_client.answers import Decision

__all__ = ["OversightReceipts", "OversightReviewer", "arun_with_oversight", "run_with_oversight"]

# What a per-call interrupt allows when its schema does not say: never `edit` unless it is known.
ASSUMED_DECISIONS = frozenset({"approve", "reject"})


@dataclass(frozen=True)
class _Review:
    """One call in an interrupt, and the decisions its review allows."""

    call: OverseenCall
    allowed: frozenset[str]


class OversightReviewer(OversightAdapter):
    """Answers `HumanInTheLoopMiddleware`'s reviews from Oversight: `when` to pause only calls
    the guardrails do not allow, `resume` to answer a paused graph's interrupts, `receipts` to
    report what ran; `middleware(tools)` sets all of it up. The settings are
    `OversightAdapter`'s.

    It remembers each call between its gate, its decision and its execution, so resume a
    graph with the reviewer whose `when` paused it, in the same process (as `run_with_oversight`
    does): `when` must give the same answer when the graph resumes, and only its memory keeps
    a person's rejection from being skipped should the guardrails' answer have changed since.
    """

    def __init__(self, oversight: Oversight, **settings: Any) -> None:
        super().__init__(oversight, **settings)
        # `when`'s answers, by call (id, arguments): the middleware asks again on resume.
        self._paused: Memory[bool] = Memory()
        # The guardrails' answers to `when`, by (tool, arguments): a deny's reasons for `resume`.
        self._checked: Memory[Decision | None] = Memory()
        # Calls cleared to run, by (tool, arguments they run with): for their receipts.
        self._cleared: Memory[list[Verdict]] = Memory()

    # --- the gate -------------------------------------------------------------------------------

    def when(self, request: ToolCallRequest) -> bool:
        """`InterruptOnConfig.when`: pause the call unless Oversight's guardrails allow it."""
        tool_call = request.tool_call
        call = self._call(tool_call["name"], dict(tool_call["args"]))
        key = (tool_call.get("id") or "", canonical(call.params))
        if key[0] and (paused := self._paused.get(key)) is not None:
            return paused
        decision = self.check(call)
        pause = decision is None or not decision.allowed
        if key[0]:
            self._paused.put(key, pause)
        if pause:
            self._checked.put((call.tool, canonical(call.params)), decision)
        else:
            self._expect(Verdict(call, runs=True, params=call.params))
        return pause

    def interrupt_on(
        self,
        tools: Iterable[str],
        *,
        allowed_decisions: Sequence[DecisionType] = ("approve", "edit", "reject"),
    ) -> dict[str, bool | InterruptOnConfig]:
        """`HumanInTheLoopMiddleware(interrupt_on=...)` for `tools`, with `when` as their gate."""
        return {
            tool: InterruptOnConfig(allowed_decisions=list(allowed_decisions), when=self.when)
            for tool in tools
        }

    def middleware(
        self,
        tools: Iterable[str],
        *,
        allowed_decisions: Sequence[DecisionType] = ("approve", "edit", "reject"),
        interrupt_mode: InterruptMode = "batched",
    ) -> list[AgentMiddleware[Any, Any, Any]]:
        """The middleware for `create_agent(middleware=...)` that puts `tools` under Oversight:
        the HITL middleware gated by `when`, then `receipts()`."""
        hitl: HumanInTheLoopMiddleware[Any, Any, Any] = HumanInTheLoopMiddleware(
            interrupt_on=self.interrupt_on(tools, allowed_decisions=allowed_decisions),
            interrupt_mode=interrupt_mode,
        )
        return [hitl, self.receipts()]

    def receipts(self) -> OversightReceipts:
        return OversightReceipts(self)

    # --- the answers ----------------------------------------------------------------------------

    def resume(self, interrupts: Sequence[Interrupt], *, context: str = "") -> Command[Any] | None:
        """The `Command(resume=...)` answering every interrupt from Oversight's decisions (it
        returns when all are decided), or None when one of them is not a review request of
        `HumanInTheLoopMiddleware`: that is the caller's to answer, and nobody is asked.
        `context` (what the agent is working on) goes into the justifications."""
        parsed = [_reviews_of(interrupt, self._call, context) for interrupt in interrupts]
        if any(reviews is None for reviews in parsed):
            return None
        every = [review for reviews in parsed if reviews for review in reviews]
        verdicts = iter(self._verdicts([review.call for review in every]))
        answers: dict[str, Any] = {}
        for interrupt, reviews in zip(interrupts, parsed, strict=True):
            decisions = [self._decision(review, next(verdicts)) for review in reviews or ()]
            batched = isinstance(interrupt.value, dict) and "action_requests" in interrupt.value
            answers[interrupt.id] = {"decisions": decisions} if batched else decisions[0]
        return Command(resume=answers)

    def _verdicts(self, calls: Sequence[OverseenCall]) -> list[Verdict]:
        """The guardrails' verdict where `when` saw a deny, else a person's decision."""
        verdicts: list[Verdict | None] = [
            self.verdict_of_check(call, self._checked.get((call.tool, canonical(call.params))))
            for call in calls
        ]
        asked = iter(
            self.decide([call for call, v in zip(calls, verdicts, strict=True) if v is None])
        )
        return [verdict if verdict is not None else next(asked) for verdict in verdicts]

    def _decision(self, review: _Review, verdict: Verdict) -> dict[str, Any]:
        """A verdict as a decision the review allows. Whatever is allowed, a call runs only with
        the arguments Oversight approved; a refusal that cannot be given is an error."""
        allowed, call = review.allowed, review.call
        if verdict.runs and (verdict.changed or "approve" not in allowed):
            if "edit" in allowed:
                self._expect(verdict)
                edited = {"name": call.tool, "args": verdict.params}
                return {"type": "edit", "edited_action": edited}
            verdict = (
                not_applied(verdict)
                if verdict.changed
                else refused(call, "Oversight: this tool's review cannot approve calls.")
            )
        if verdict.runs:
            self._expect(verdict)
            return {"type": "approve"}
        for kind in ("reject", "respond"):  # respond: the message as the tool's answer
            if kind in allowed:
                return {"type": kind, "message": verdict.message}
        raise ValueError(
            f"The review of {call.tool} allows only {sorted(allowed)}: Oversight's refusal of the "
            "call cannot be given. Allow 'reject' in its InterruptOnConfig."
        )

    # --- receipts -------------------------------------------------------------------------------

    def _expect(self, verdict: Verdict) -> None:
        """Remember a call cleared to run, for its receipt (the arguments it runs with)."""
        key = (verdict.call.tool, canonical(verdict.params))
        self._cleared.update(key, lambda waiting: [*(waiting or []), verdict])

    def _executing(self, tool_call: ToolCall) -> Verdict | None:
        """The verdict of a call about to run, if Oversight cleared it (taken, so it is
        reported once)."""
        taken: list[Verdict] = []

        def take_first(waiting: list[Verdict] | None) -> list[Verdict] | None:
            if not waiting:
                return None
            taken.append(waiting[0])
            return waiting[1:] or None

        self._cleared.update((tool_call["name"], canonical(tool_call["args"])), take_first)
        return taken[0] if taken else None

    def _call(
        self,
        tool: str,
        params: dict[str, Any],
        description: str = "",
        context: str = "",
    ) -> OverseenCall:
        return OverseenCall(tool, self.action_for(tool), params, description, context)


class OversightReceipts(AgentMiddleware[Any, Any, Any]):
    """Sends the execution receipt of each call Oversight cleared when its tool ends: success or
    failure (an error `ToolMessage`, or the exception), the arguments it ran with, its approval
    request. List it after `HumanInTheLoopMiddleware` (as `OversightReviewer.middleware` does),
    so it sees the call as it runs, an approver's edit applied; other calls pass untouched."""

    def __init__(self, reviewer: OversightReviewer) -> None:
        super().__init__()
        self.reviewer = reviewer

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        verdict = self.reviewer._executing(request.tool_call)
        if verdict is None:
            return handler(request)
        started = time.monotonic()
        try:
            result = handler(request)
        except GraphBubbleUp:  # paused, not ended: the call will come again
            self.reviewer._expect(verdict)
            raise
        except Exception as exc:
            self.reviewer.report(
                verdict, success=False, error=_describe(exc), duration_ms=_elapsed_ms(started)
            )
            raise
        error = _error_of(result, request.tool_call)
        self.reviewer.report(
            verdict, success=error is None, error=error or "", duration_ms=_elapsed_ms(started)
        )
        return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        verdict = self.reviewer._executing(request.tool_call)
        if verdict is None:
            return await handler(request)
        started = time.monotonic()
        try:
            result = await handler(request)
        except GraphBubbleUp:
            self.reviewer._expect(verdict)
            raise
        except Exception as exc:
            await asyncio.to_thread(
                self.reviewer.report,
                verdict,
                success=False,
                error=_describe(exc),
                duration_ms=_elapsed_ms(started),
            )
            raise
        error = _error_of(result, request.tool_call)
        await asyncio.to_thread(
            self.reviewer.report,
            verdict,
            success=error is None,
            error=error or "",
            duration_ms=_elapsed_ms(started),
        )
        return result


def run_with_oversight(
    graph: Pregel[Any, Any, Any, Any],
    input: Any,
    config: RunnableConfig,
    *,
    oversight: Oversight | OversightReviewer,
    **invoke_options: Any,
) -> Any:
    """Invoke `graph` to the end under Oversight: each time it stops on review interrupts,
    answer them from Oversight's decisions (`OversightReviewer.resume`) and resume. Returns the
    last `invoke`'s result; it still holds `__interrupt__` when an interrupt was not a review
    (yours to answer). `config` needs a `thread_id` (a checkpointer keeps the paused graph);
    `invoke_options` go to every `invoke`."""
    reviewer = (
        oversight if isinstance(oversight, OversightReviewer) else OversightReviewer(oversight)
    )
    result = graph.invoke(input, config, **invoke_options)
    while interrupts := _interrupts_of(result):
        command = reviewer.resume(interrupts, context=_context_of(result))
        if command is None:
            break
        result = graph.invoke(command, config, **invoke_options)
    return result


async def arun_with_oversight(
    graph: Pregel[Any, Any, Any, Any],
    input: Any,
    config: RunnableConfig,
    *,
    oversight: Oversight | OversightReviewer,
    **invoke_options: Any,
) -> Any:
    """`run_with_oversight` with `ainvoke`; the waits for decisions run in a thread."""
    reviewer = (
        oversight if isinstance(oversight, OversightReviewer) else OversightReviewer(oversight)
    )
    result = await graph.ainvoke(input, config, **invoke_options)
    while interrupts := _interrupts_of(result):
        command = await asyncio.to_thread(reviewer.resume, interrupts, context=_context_of(result))
        if command is None:
            break
        result = await graph.ainvoke(command, config, **invoke_options)
    return result


# --- helpers --------------------------------------------------------------------------------------


def _reviewer(oversight: Oversight | OversightReviewer) -> OversightReviewer:
    return oversight if isinstance(oversight, OversightReviewer) else OversightReviewer(oversight)


def _reviews_of(
    interrupt: Interrupt, make: Callable[..., OverseenCall], context: str
) -> list[_Review] | None:
    """The calls a HITL interrupt asks about (batched: a HITL request; per call: a tool approval
    request), or None for any other interrupt."""
    value = interrupt.value
    if not isinstance(value, dict):
        return None
    if value.get("type") == "tool_approval":
        allowed = _allowed_by_schema(interrupt.response_schema)
        return [
            _Review(make(value["name"], dict(value["args"]), _described(value), context), allowed)
        ]
    requests, configs = value.get("action_requests"), value.get("review_configs")
    if not isinstance(requests, list) or not isinstance(configs, list):
        return None
    by_name = {config["action_name"]: config for config in configs}
    reviews = []
    for index, request in enumerate(requests):
        config = configs[index] if len(configs) == len(requests) else by_name[request["name"]]
        call = make(request["name"], dict(request["args"]), _described(request), context)
        reviews.append(_Review(call, frozenset(config["allowed_decisions"])))
    return reviews


def _described(request: dict[str, Any]) -> str:
    """A review's description, unless it is the middleware's default (it only repeats the
    tool and its arguments, which approvers see anyway)."""
    description = str(request.get("description") or "")
    default_tail = f"\n\nTool: {request['name']}\nArgs: {request['args']}"
    return "" if description.endswith(default_tail) else description


def _allowed_by_schema(schema: object) -> frozenset[str]:
    """The decision types a per-call interrupt's `response_schema` (JSON Schema) accepts."""
    if isinstance(schema, dict):
        mapping = (schema.get("discriminator") or {}).get("mapping")
        if isinstance(mapping, dict):
            return frozenset(mapping)
        const = ((schema.get("properties") or {}).get("type") or {}).get("const")
        if isinstance(const, str):
            return frozenset({const})
    return ASSUMED_DECISIONS


def _interrupts_of(result: Any) -> Sequence[Interrupt]:
    """The interrupts of an `invoke`'s result: a dict's `__interrupt__`, or a v2 output's."""
    if isinstance(result, dict):
        return list(result.get("__interrupt__") or ())
    return list(getattr(result, "interrupts", None) or ())


def _context_of(result: Any) -> str:
    """What the approver should know of the run: what the agent said last, and its task."""
    value = result if isinstance(result, dict) else getattr(result, "value", None)
    messages: list[BaseMessage] = list((value or {}).get("messages") or [])
    parts = []
    said = next((m for m in reversed(messages) if isinstance(m, AIMessage)), None)
    if said is not None and said.text.strip():
        parts.append(f'It said: "{clip(said.text)}"')
    task = next((m for m in messages if isinstance(m, HumanMessage)), None)
    if task is not None and task.text.strip():
        parts.append(f'Its task: "{clip(task.text)}"')
    return "\n".join(parts)


def _error_of(result: ToolMessage | Command[Any], tool_call: ToolCall) -> str | None:
    """The error a tool's result reports (a `ToolMessage` with status "error"), or None."""
    messages: list[Any] = [result]
    if isinstance(result, Command) and isinstance(result.update, dict):
        messages = list(result.update.get("messages") or [])
    for message in messages:
        if (
            isinstance(message, ToolMessage)
            and message.tool_call_id == tool_call.get("id")
            and message.status == "error"
        ):
            return str(message.content)
    return None
