"""A small typed Python client for the Oversight agent API.

    from oversight_client import Oversight, ActionDenied, ApprovalDenied

    oversight = Oversight("https://oversight.example.com", api_key=os.environ["OVERSIGHT_API_KEY"])

    # Check the guardrails; if a person must decide, ask and wait; refused -> ActionDenied.
    with oversight.guard(
        "write_file", {"path": "/srv/app/config.yml"}, justification="Turn on the cache."
    ) as go:
        write_file(**go.params)            # the allowed or approved arguments

    # Or always ask a person:
    with oversight.require_approval(
        "deploy_to_production", {"service": "api", "version": "1.2.3"},
        justification="Roll out the fix for INC-42.",
    ) as approval:
        deploy(**approval.params)          # the approved arguments (an approver may change them)

    # When a block ends, its execution receipt is sent for it (`POST /api/v1/outcomes`): success,
    # or failure with the exception's type and message (then the exception goes on), the
    # arguments it was cleared or approved with, the approval request, how long it took.
    # A receipt the server refuses as not what was approved raises ExecutionMismatch.

    # Report an outcome by hand (an action not run inside a guard):
    oversight.report_outcome("send_email", {"to": "ops@example.com"}, success=True)

    # In the agent's callback endpoint: is it from Oversight? (raises InvalidSignature if not)
    request = verify_callback(body=raw_body, headers=headers, secret=WEBHOOK_SECRET)

Every write carries an Idempotency-Key, so the retries built in here (connection errors,
429 with Retry-After, 5xx, 409 while the first attempt is in flight) never open a second
request nor record an outcome twice. It depends only on httpx.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

import httpx

from oversight_client.answers import (
    ActionDenied,
    Approval,
    ApprovalDenied,
    ApprovalRequest,
    ApprovalTimeout,
    Clearance,
    CostReport,
    Decision,
    ExecutionMismatch,
    InvalidSignature,
    Outcome,
    OversightError,
    Reason,
    params_sha256,
    verify_callback,
)

__version__ = "0.2.0"

__all__ = [
    "ActionDenied",
    "Approval",
    "ApprovalDenied",
    "ApprovalRequest",
    "ApprovalTimeout",
    "Clearance",
    "CostReport",
    "Decision",
    "ExecutionMismatch",
    "InvalidSignature",
    "Outcome",
    "Oversight",
    "OversightError",
    "Reason",
    "params_sha256",
    "verify_callback",
]

# The server lets a retry take over an Idempotency-Key after its first call has held it this
# long (approvals.idempotency.IN_FLIGHT_LEASE, 60 s), plus a margin.
IN_FLIGHT_PATIENCE = 65.0

# The server keeps this much of an outcome's error text (controls.outcomes.MAX_ERROR).
MAX_ERROR = 2000

logger = logging.getLogger("oversight_client")


P = ParamSpec("P")
R = TypeVar("R")


class Oversight:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 75.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/api/v1/",
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"oversight-client/{__version__}",
            },
            timeout=timeout,
            transport=transport,
        )
        self.max_retries = max_retries
        self.backoff = backoff

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Oversight:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls --------------------------------------------------------------------------------

    def request_approval(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        justification: str,
        risk_level: str | None = None,
        urgency: str = "normal",
        confidence: float | None = None,
        estimated_cost_cents: int | None = None,
        timeout_seconds: int | None = None,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> ApprovalRequest:
        """Open a request (safe to retry: it always carries an Idempotency-Key)."""
        body: dict[str, Any] = {
            "action": action,
            "params": params or {},
            "justification": justification,
            "urgency": urgency,
        }
        optional = {
            "risk_level": risk_level,
            "confidence": confidence,
            "estimated_cost_cents": estimated_cost_cents,
            "timeout_seconds": timeout_seconds,
            "callback_url": callback_url,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return ApprovalRequest.from_json(
            self._call("POST", "approval-requests", json=body, headers=headers)
        )

    def get(self, request_id: str, *, wait: int = 0) -> ApprovalRequest:
        path = f"approval-requests/{request_id}"
        if not wait:
            return ApprovalRequest.from_json(self._call("GET", path))
        # The server holds a long-poll up to `wait` seconds: read for that long, whatever the
        # client's own timeout is.
        configured = self._client.timeout
        read = None if configured.read is None else max(configured.read, wait + 15.0)
        timeout = httpx.Timeout(
            connect=configured.connect, read=read, write=configured.write, pool=configured.pool
        )
        return ApprovalRequest.from_json(
            self._call("GET", path, params={"wait": wait}, timeout=timeout)
        )

    def wait(self, request_id: str, *, timeout: float | None = None) -> ApprovalRequest:
        """Long-poll until the request is final; raise ApprovalTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 60.0 if deadline is None else deadline - time.monotonic()
            remaining = max(1, min(60, math.ceil(left)))  # never a busy loop of wait=0 calls
            request = self.get(request_id, wait=remaining)
            if request.is_final:
                return request
            if deadline is not None and time.monotonic() >= deadline:
                raise ApprovalTimeout(f"no decision on {request_id} within {timeout} s")

    def cancel(self, request_id: str) -> ApprovalRequest:
        return ApprovalRequest.from_json(
            self._call("POST", f"approval-requests/{request_id}/cancel")
        )

    def report_cost(
        self,
        model: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        task_id: str | None = None,
        success: bool = True,
        idempotency_key: str | None = None,
    ) -> CostReport:
        """Report one LLM call; the answer has its exact cost and the agent's budget states.
        Pass an approval request's id as `task_id` to reconcile its estimated cost. Retries are
        safe: every report carries an Idempotency-Key, so it is recorded once."""
        body: dict[str, Any] = {
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached_input_tokens,
            "success": success,
        }
        if task_id is not None:
            body["task_id"] = task_id
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return CostReport.from_json(self._call("POST", "costs", json=body, headers=headers))

    def report_outcome(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        success: bool,
        params_sha256: str | None = None,
        approval_request_id: str | None = None,
        error: str = "",
        duration_ms: int | None = None,
        cost_cents: Decimal | int | str | None = None,
        idempotency_key: str | None = None,
    ) -> Outcome:
        """Report what the agent did: `action` with the `params` it executed (or their
        `params_sha256`), whether it succeeded, and why not (`error`). Naming the approval
        request it executed (`approval_request_id`) makes this the request's execution receipt:
        the arguments must be the approved ones (an approver's changes included), else the
        server records a critical failure, disables the agent and answers 409, raised here as
        `ExecutionMismatch`. `guard` and `require_approval` send this for their blocks
        themselves. Retries are safe: every report carries an Idempotency-Key."""
        if params is not None and params_sha256 is not None:
            raise TypeError("Pass params or params_sha256, not both.")
        body: dict[str, Any] = {"action": action, "success": success, "error": error}
        if params_sha256 is not None:
            body["params_sha256"] = params_sha256
        else:
            body["params"] = params or {}
        optional = {
            "approval_request_id": approval_request_id,
            "duration_ms": duration_ms,
            "cost_cents": None if cost_cents is None else str(cost_cents),
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return Outcome.from_json(self._call("POST", "outcomes", json=body, headers=headers))

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "agents/me")
        return result

    def check(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        estimated_cost_cents: int | None = None,
        confidence: float | None = None,
    ) -> Decision:
        """Ask the guardrails whether `action` may go ahead. A paused or disabled agent gets a
        deny (`agent_paused` / `agent_disabled`) like any other refusal."""
        body: dict[str, Any] = {"action": action, "params": params or {}}
        if estimated_cost_cents is not None:
            body["estimated_cost_cents"] = estimated_cost_cents
        if confidence is not None:
            body["confidence"] = confidence
        try:
            return Decision.from_json(self._call("POST", "guardrails/check", json=body))
        except OversightError as error:
            if error.status == 403 and error.code in {"agent_paused", "agent_disabled"}:
                reason = Reason(error.code, error.message, "deny")
                return Decision("deny", (reason,), raw={"error": error.message})
            raise

    def policies(self) -> dict[str, Any]:
        """The action policies that apply to this agent (to plan with)."""
        result: dict[str, Any] = self._call("GET", "policies")
        return result

    # --- the guard ------------------------------------------------------------------------------

    @contextmanager
    def require_approval(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> Iterator[Approval]:
        """Ask, wait, and enter the block only when approved; raise ApprovalDenied otherwise.
        Run the block with the yielded `Approval`'s `params`: the approved arguments, an
        approver's changes included.

        If the caller stops waiting (timeout, Ctrl-C), the request is withdrawn so nobody
        approves something that will not happen. A create the guardrails refuse raises
        ActionDenied with their reasons.

        When the block ends, its execution receipt is sent (`report_outcome`, naming the
        request, with the approved `params` and the block's duration): a success, or, when the
        block raises, a failure with the exception's type and message, and the exception goes
        on (a receipt that cannot be sent never replaces it). A receipt the server refuses as
        not what was approved raises `ExecutionMismatch`; one that cannot be sent for another
        reason is logged (logger `oversight_client`) and leaves `Approval.receipt` None.
        """
        decided = self._approved(action, params, timeout=timeout, fields=fields)
        approval = Approval(request=decided, params=decided.approved_params)
        with self._receipt(action, approval.params, decided.id, approval):
            yield approval

    def _approved(
        self,
        action: str,
        params: dict[str, Any] | None,
        *,
        timeout: float | None,
        fields: dict[str, Any],
    ) -> ApprovalRequest:
        """Ask and wait: the approved request; ApprovalDenied when it ends otherwise, ActionDenied
        when the guardrails refuse the create."""
        try:
            request = self.request_approval(action, params, **fields)
        except OversightError as error:
            if error.status == 403 and "reasons" in error.details:
                reasons = tuple(Reason.from_json(r) for r in error.details["reasons"])
                raise ActionDenied(action, reasons, error.details.get("violation_id")) from error
            raise
        try:
            decided = self.wait(request.id, timeout=timeout)
        except BaseException:
            with contextlib.suppress(OversightError):  # decided meanwhile: nothing to withdraw
                self.cancel(request.id)
            raise
        if not decided.approved:
            raise ApprovalDenied(decided)
        return decided

    @contextmanager
    def _receipt(
        self,
        action: str,
        params: dict[str, Any],
        request_id: str | None,
        block: Approval | Clearance,
    ) -> Iterator[None]:
        """Run the block, then report its outcome (the execution receipt of `request_id`) and
        keep it on `block.receipt`."""
        started = time.monotonic()
        try:
            yield
        except GeneratorExit:  # abandoned, not ended: nothing is known about the block
            raise
        except BaseException as exc:
            try:
                block.receipt = self.report_outcome(
                    action,
                    params,
                    success=False,
                    error=_describe(exc),
                    approval_request_id=request_id,
                    duration_ms=_elapsed_ms(started),
                )
            except Exception as failure:  # the block's own exception is the one to see
                level = logging.ERROR if isinstance(failure, ExecutionMismatch) else logging.WARNING
                logger.log(level, "the failure of %s was not reported: %s", action, failure)
                exc.add_note(f"Oversight: the failure of {action} was not reported ({failure}).")
            raise
        try:
            block.receipt = self.report_outcome(
                action,
                params,
                success=True,
                approval_request_id=request_id,
                duration_ms=_elapsed_ms(started),
            )
        except ExecutionMismatch:
            raise
        except (OversightError, httpx.HTTPError) as failure:
            # The action has run: raising would tell the caller it had not (and invite a second
            # run). The server's record misses this success; the log says so.
            logger.warning("the outcome of %s was not reported: %s", action, failure)

    def guard(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        justification: str | Callable[..., str] = "",
        estimated_cost_cents: int | None = None,
        confidence: float | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Guard:
        """Check the guardrails first; on allow go ahead, on require_approval ask a person and
        wait, on deny raise ActionDenied with the reasons. As a context manager it yields a
        `Clearance` (use its `params`); as a decorator the function's keyword arguments are the
        params and it runs with the allowed or approved ones.

        When the block (or the function) ends, its outcome is reported as `require_approval`
        reports it: with the params it was cleared with (the approved ones when a person
        decided), naming the approval request if there was one; a raised exception is reported
        as a failure and goes on."""
        return Guard(
            self,
            action,
            params,
            justification=justification,
            estimated_cost_cents=estimated_cost_cents,
            confidence=confidence,
            timeout=timeout,
            fields=fields,
        )

    def requires_approval(
        self, action: str, *, justification: str | Callable[..., str], **fields: Any
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: the function's keyword arguments are the params; it runs with the approved
        ones (an approver's changes included), and its receipt is sent when it returns or
        raises (see `require_approval`)."""

        def decorator(function: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(function)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                why = justification(*args, **kwargs) if callable(justification) else justification
                with self.require_approval(
                    action, dict(kwargs), justification=why, **fields
                ) as approval:
                    return function(*args, **approval.params)

            return wrapper

        return decorator

    # --- transport --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        attempt = in_flight = 0
        give_up_at = 0.0  # on `idempotency_in_flight`, set by the first such answer
        while True:
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt >= self.max_retries:
                    raise
                self._sleep(attempt)
                attempt += 1
                continue
            if response.status_code < 400:
                return response.json()
            error = _error(response)
            if response.status_code == 409 and error.code == "idempotency_in_flight":
                # An earlier call with this key is still running, or died mid-way: the server
                # hands a dead call's key over once its lease has run out, so ask until then.
                give_up_at = give_up_at or time.monotonic() + IN_FLIGHT_PATIENCE
                if time.monotonic() > give_up_at:
                    raise error
                self._sleep(min(in_flight, 4))
                in_flight += 1
                continue
            # Safe to retry: creates carry an Idempotency-Key, everything else is a read or
            # a cancel, which answers 409 if it already happened.
            if response.status_code not in {429, 500, 502, 503, 504} or attempt >= self.max_retries:
                raise error
            self._sleep(attempt, response.headers.get("Retry-After"))
            attempt += 1

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        if retry_after and retry_after.isdigit():
            time.sleep(int(retry_after))
            return
        time.sleep(self.backoff * 2**attempt * (0.5 + random.random() / 2))  # noqa: S311 - jitter


class Guard:
    """`Oversight.guard`: a context manager and a decorator."""

    def __init__(
        self,
        client: Oversight,
        action: str,
        params: dict[str, Any] | None,
        *,
        justification: str | Callable[..., str],
        estimated_cost_cents: int | None,
        confidence: float | None,
        timeout: float | None,
        fields: dict[str, Any],
    ) -> None:
        self.client = client
        self.action = action
        self.params = params or {}
        self.justification = justification
        self.estimated_cost_cents = estimated_cost_cents
        self.confidence = confidence
        self.timeout = timeout
        self.fields = fields
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Clearance:
        stack = contextlib.ExitStack()
        approval = stack.enter_context(self._run(self.params, self.justification))
        self._stack = stack
        return approval

    def __exit__(self, *exc: Any) -> bool | None:
        stack, self._stack = self._stack, None
        return stack.__exit__(*exc) if stack is not None else None

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            why = self.justification
            if callable(why):
                why = why(*args, **kwargs)
            with self._run(dict(kwargs), why) as approval:
                return function(*args, **approval.params)

        return wrapper

    @contextmanager
    def _run(self, params: dict[str, Any], justification: Any) -> Iterator[Clearance]:
        decision = self.client.check(
            self.action,
            params,
            estimated_cost_cents=self.estimated_cost_cents,
            confidence=self.confidence,
        )
        if decision.denied:
            raise ActionDenied(self.action, decision.reasons, decision.violation_id)
        if decision.allowed:
            clearance = Clearance(params=params, decision=decision)
        else:
            why = justification or "; ".join(reason.message for reason in decision.reasons)
            optional = {
                "estimated_cost_cents": self.estimated_cost_cents,
                "confidence": self.confidence,
            }
            request = self.client._approved(
                self.action,
                params,
                timeout=self.timeout,
                fields={
                    "justification": why,
                    **{key: value for key, value in optional.items() if value is not None},
                    **self.fields,
                },
            )
            clearance = Clearance(
                params=request.approved_params, decision=decision, request=request
            )
        with self.client._receipt(
            self.action,
            clearance.params,
            clearance.request.id if clearance.request else None,
            clearance,
        ):
            yield clearance


def _describe(exc: BaseException) -> str:
    """An exception as an outcome's `error`: its type and message, as the server stores text
    (NUL and lone surrogates would have the whole report refused)."""
    message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    text = text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return text[:MAX_ERROR]


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))


def _error(response: httpx.Response) -> OversightError:
    try:
        error = response.json()["error"]
        details = {
            key: value for key, value in error.items() if key not in {"code", "message", "fields"}
        }
        kind = ExecutionMismatch if error["code"] == "execution_mismatch" else OversightError
        return kind(
            response.status_code, error["code"], error["message"], error.get("fields"), details
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return OversightError(response.status_code, "http_error", response.text[:200])
