"""What the SDK adapters share: putting an agent's tool calls to Oversight and turning each answer
into a `Verdict`: the tool runs (with which arguments) or the model is told why not.

The rule both adapters follow: their gate (the OpenAI SDK's `needs_approval`, LangChain's `when`)
asks the guardrails and pauses the agent only when they do not allow the call. A paused call the
guardrails refused is answered at once with their reasons; any other paused call is put to a
person as an approval request, and the agent resumes with the decision. No SDK is imported here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

import httpx

from oversight_client import MAX_ERROR, Oversight
from oversight_client.answers import (
    ApprovalRequest,
    ApprovalTimeout,
    Decision,
    ExecutionMismatch,
    OversightError,
    Reason,
)

logger = logging.getLogger("oversight_client")

# How much of the agent's task, or of what it said before a call, goes into a justification.
CONTEXT_CHARS = 1000
# The server's limit on a justification (approvals.serializers).
MAX_JUSTIFICATION = 10_000
# How many calls an adapter remembers between its gate and their execution. A call is forgotten
# once it ran or was refused; this bounds what calls that never come back (a run abandoned at
# the pause) can hold.
MEMORY = 4096


@dataclass(frozen=True)
class ToolCall:
    """One tool call an agent wants to make, as an adapter puts it to Oversight."""

    tool: str  # the tool's name in the SDK
    action: str  # the Oversight action (a policy's name) it is checked and requested as
    params: dict[str, Any]  # the model's arguments
    description: str = ""  # what the SDK's review request says about the call, if anything
    context: str = ""  # the agent's task, or what it said before the call, when known


# Not the `type` statement nor PEP 695 generics below: the client supports Python 3.11.
Justification: TypeAlias = "str | Callable[[ToolCall], str]"  # noqa: UP040


def default_justification(call: ToolCall) -> str:
    """The justification an approver reads when the caller gives none: which tool, and what the
    agent is working on (its task, its own words before the call) when the adapter knows."""
    named = call.tool if call.action == call.tool else f"{call.tool} (action {call.action})"
    parts = [f"The agent calls the tool {named}."]
    parts += [text for text in (call.description, call.context) if text]
    return "\n\n".join(parts)


def clip(text: str, limit: int = CONTEXT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def canonical(params: Mapping[str, Any]) -> str:
    """Arguments as one string, the same however the SDK ordered them (a memory key)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Verdict:
    """Oversight's answer for one call: whether the tool runs and with which arguments (the
    approved ones, an approver's changes included); if not, what the model is told instead."""

    call: ToolCall
    runs: bool
    params: dict[str, Any]
    message: str = ""
    request: ApprovalRequest | None = None  # the approval request, when a person decided

    @property
    def changed(self) -> bool:
        """An approver changed the arguments: the tool must run with `params`, not the model's."""
        return self.runs and self.params != self.call.params


def refused(call: ToolCall, message: str) -> Verdict:
    return Verdict(call, runs=False, params=call.params, message=message)


def refused_by_guardrails(call: ToolCall, reasons: Sequence[Reason]) -> Verdict:
    denying = [reason for reason in reasons if reason.effect == "deny"] or list(reasons)
    why = "; ".join(f"{reason.message} ({reason.code})" for reason in denying) or "no reason given"
    return refused(
        call, f"Oversight: the guardrails refused this call, so the tool did not run: {why}"
    )


def not_applied(verdict: Verdict) -> Verdict:
    """The refusal of an approval that came with changed arguments the SDK cannot run the call
    with: the model is told what was approved, so it can make that call instead."""
    call = verdict.call
    return refused(
        call,
        "Oversight: a reviewer approved this call only with changed arguments, which cannot be "
        "applied to this call, so the tool did not run. To go ahead, call "
        f"{call.tool} again with exactly these arguments: {canonical(verdict.params)}",
    )


def edit_notice(verdict: Verdict) -> str:
    """Told to the model before the result of a call an approver changed (it still holds the
    call it made), so it does not take the result for that of its own arguments."""
    return (
        "Note: a reviewer in Oversight changed this call's arguments before it ran. It ran with "
        f"{canonical(verdict.params)}, not the arguments in your call; this was intentional and "
        "authorised. Do not re-issue your original call."
    )


_T = TypeVar("_T")


class Memory(Generic[_T]):  # noqa: UP046
    """What an adapter keeps about a call between its gate, its decision and its execution, by
    call; bounded (`MEMORY`), oldest first out. Thread-safe: LangGraph runs tools (and so their
    gates) in threads."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str], _T] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple[str, str], value: _T) -> None:
        with self._lock:
            self._put(key, value)

    def get(self, key: tuple[str, str]) -> _T | None:
        with self._lock:
            return self._items.get(key)

    def pop(self, key: tuple[str, str]) -> _T | None:
        with self._lock:
            return self._items.pop(key, None)

    def update(self, key: tuple[str, str], change: Callable[[_T | None], _T | None]) -> None:
        """Replace the value at `key` with `change(value)` in one step (None: drop it)."""
        with self._lock:
            value = change(self._items.pop(key, None))
            if value is not None:
                self._put(key, value)

    def _put(self, key: tuple[str, str], value: _T) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > MEMORY:
            self._items.popitem(last=False)


class OversightAdapter:
    """The settings and the Oversight calls both adapters share.

    `actions` maps a tool's name to the action Oversight knows it by (a policy's name, e.g.
    `{"shell": "run_command"}`); a tool not in it is checked and requested under its own name.
    `justification` is the text approvers read (a string, or a function of the `ToolCall`);
    by default it names the tool and says what the agent is working on. `timeout` is how long
    to wait for a person (seconds; None waits until the request is decided or expires): a
    request nobody decided by then is withdrawn and the call refused. Other keyword arguments
    go to every approval request (`risk_level`, `urgency`, `timeout_seconds`, ...): an action
    without a policy needs a `risk_level`.
    """

    def __init__(
        self,
        oversight: Oversight,
        *,
        actions: Mapping[str, str] | None = None,
        justification: Justification | None = None,
        timeout: float | None = None,
        **request_fields: Any,
    ) -> None:
        self.oversight = oversight
        self.actions = dict(actions or {})
        self.justification = justification
        self.timeout = timeout
        self.request_fields = request_fields

    def action_for(self, tool: str) -> str:
        return self.actions.get(tool, tool)

    def check(self, call: ToolCall) -> Decision | None:
        """The guardrails' answer, or None when Oversight cannot be asked. None pauses the call
        like a require_approval: asking a person then fails loudly, so no call runs unchecked."""
        try:
            return self.oversight.check(call.action, call.params)
        except (OversightError, httpx.HTTPError) as error:
            logger.warning("the guardrails could not be asked about %s: %s", call.action, error)
            return None

    @staticmethod
    def verdict_of_check(call: ToolCall, decision: Decision | None) -> Verdict | None:
        """The verdict the guardrails gave on their own (allow, deny), or None: a person decides."""
        if decision is None or decision.needs_approval:
            return None
        if decision.allowed:
            return Verdict(call, runs=True, params=call.params)
        return refused_by_guardrails(call, decision.reasons)

    def decide(self, calls: Sequence[ToolCall]) -> list[Verdict]:
        """Ask people about `calls` and wait for every decision. All the requests are opened
        before any wait, so approvers see the agent's calls together; if waiting fails (or is
        interrupted) the requests still open are withdrawn, so nobody approves what will not
        happen."""
        opened: list[ApprovalRequest | Verdict] = []
        try:
            for call in calls:
                opened.append(self._open(call))
        except BaseException:
            self._withdraw(item for item in opened if isinstance(item, ApprovalRequest))
            raise
        verdicts: list[Verdict | None] = [
            item if isinstance(item, Verdict) else None for item in opened
        ]
        pending = [
            (index, item) for index, item in enumerate(opened) if isinstance(item, ApprovalRequest)
        ]
        if pending:
            # Waits are long-polls: one thread each, so every decision is seen when it is made.
            pool = ThreadPoolExecutor(max_workers=len(pending), thread_name_prefix="oversight")
            try:
                futures = [
                    (index, pool.submit(self._await, calls[index], request))
                    for index, request in pending
                ]
                for index, future in futures:
                    verdicts[index] = future.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                self._withdraw(request for _, request in pending)
                raise
            pool.shutdown()
        return [verdict for verdict in verdicts if verdict is not None]

    def report(
        self, verdict: Verdict, *, success: bool, error: str = "", duration_ms: int | None = None
    ) -> None:
        """Send the execution receipt of a call that ran (with the arguments it ran with, naming
        its approval request if a person decided). Never raises: the tool has run, and saying
        otherwise would invite a second run. A receipt the server refuses as not what was
        approved is logged as an error; one that could not be sent, as a warning."""
        call = verdict.call
        try:
            self.oversight.report_outcome(
                call.action,
                verdict.params,
                success=success,
                error=error[:MAX_ERROR],
                approval_request_id=verdict.request.id if verdict.request else None,
                duration_ms=duration_ms,
            )
        except ExecutionMismatch as failure:
            logger.error("the receipt of %s was refused: %s", call.action, failure)
        except (OversightError, httpx.HTTPError) as failure:
            logger.warning("the outcome of %s was not reported: %s", call.action, failure)

    # --- helpers ----------------------------------------------------------------------------------

    def _justify(self, call: ToolCall) -> str:
        given = self.justification
        text = given(call) if callable(given) else given
        text = (text or "").strip() or default_justification(call)
        return text[:MAX_JUSTIFICATION]

    def _open(self, call: ToolCall) -> ApprovalRequest | Verdict:
        """Open the call's approval request, or the refusal when the server will not (the
        guardrails' deny, a paused or disabled agent)."""
        try:
            return self.oversight.request_approval(
                call.action, call.params, justification=self._justify(call), **self.request_fields
            )
        except OversightError as error:
            if error.status == 403 and "reasons" in error.details:
                reasons = [Reason.from_json(reason) for reason in error.details["reasons"]]
                return refused_by_guardrails(call, reasons)
            if error.status == 403 and error.code in {"agent_paused", "agent_disabled"}:
                return refused_by_guardrails(call, [Reason(error.code, error.message, "deny")])
            raise

    def _await(self, call: ToolCall, request: ApprovalRequest) -> Verdict:
        try:
            decided = self.oversight.wait(request.id, timeout=self.timeout)
        except ApprovalTimeout:
            try:
                self.oversight.cancel(request.id)
            except OversightError:  # decided meanwhile (409): go by the decision
                decided = self.oversight.get(request.id)
            else:
                return refused(
                    call,
                    f"Oversight: no decision on this call within {self.timeout:g} s, so its "
                    "request was withdrawn and the tool did not run.",
                )
        return self._verdict_of_request(call, decided)

    @staticmethod
    def _verdict_of_request(call: ToolCall, request: ApprovalRequest) -> Verdict:
        if request.approved:
            return Verdict(call, runs=True, params=request.approved_params, request=request)
        decision = request.decision or {}
        if request.status == "rejected":
            reason = (decision.get("reason") or "").strip() or "no reason given"
            message = (
                f"Oversight: a reviewer rejected this call, so the tool did not run. Their "
                f"reason: {reason}"
            )
        elif request.status == "expired":
            message = "Oversight: nobody decided on this call in time, so the tool did not run."
        else:
            message = "Oversight: the request for this call was withdrawn; the tool did not run."
        return Verdict(call, runs=False, params=call.params, message=message, request=request)

    def _withdraw(self, requests: Iterable[ApprovalRequest]) -> None:
        for request in requests:
            with contextlib.suppress(OversightError, httpx.HTTPError):
                self.oversight.cancel(request.id)
