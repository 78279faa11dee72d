"""What agents report they did (SPEC §6, `POST /api/v1/outcomes`), and execution receipts.

An outcome that names an approval request is that request's receipt: the arguments executed
(their hash) must be the ones approved, the approver's changed arguments where they changed
them. A receipt for other arguments, or for a request that was not approved, is a critical
failure: an `execution.mismatch` security event, the managers alerted, and the agent disabled
(the kill switch: running it again takes two people). It is recorded all the same and answered
`409 execution_mismatch`.

Every outcome feeds the circuit breaker (`controls.breaker`): a success closes it, a failure
counts; a success also ends any loop the agent was in (`guardrails.counters.forget_recent`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import services as agents
from agents.models import Agent, AgentStatus
from approvals.binding import params_sha256 as digest_of
from approvals.models import ApprovalRequest, RiskLevel, Status
from audit.events import EventType
from audit.services import record_event
from controls import alerts, breaker
from controls.models import AlertKind, Outcome, Receipt
from guardrails import counters, selectors
from guardrails.rules import action_key
from oversight.fields import params_problem
from oversight.redis_clients import UNAVAILABLE

logger = logging.getLogger(__name__)

MAX_ERROR = 2000


class OutcomeRefused(Exception):
    """A report that is not recorded, with its API status and stable code."""

    status = 422
    code = "invalid"

    def __init__(self, message: str, *, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status


def report_outcome(
    *,
    agent: Agent,
    action: str,
    success: bool,
    params: dict[str, Any] | None = None,
    params_sha256: str | None = None,
    approval_request_id: uuid.UUID | None = None,
    error: str = "",
    duration_ms: int | None = None,
    cost_cents: Decimal | None = None,
    before_commit: Callable[[Outcome], None] | None = None,
) -> Outcome:
    """Record an outcome of `agent` and what follows from it. A mismatched receipt is recorded
    and committed too: check `outcome.mismatched`. `before_commit` runs in the transaction
    (the API stores its idempotent answer there). Raises `OutcomeRefused`.

    A paused agent may still report a receipt (what it did with an approval is evidence, and a
    mismatch disables it); anything else from a stopped agent is refused."""
    if params is not None:
        problem = params_problem(params)
        if problem:
            raise OutcomeRefused(problem)
        digest = digest_of(action, params)
    elif params_sha256:
        digest = params_sha256
    else:
        raise OutcomeRefused("Send params, or params_sha256.")
    policy = selectors.policy_set().policy_for(agent, action)
    now = timezone.now()
    with transaction.atomic():
        locked = breaker.lock(agent.pk)
        _refuse_stopped(locked, receipt=approval_request_id is not None)
        request, receipt, approved = _receipt(locked, approval_request_id, action, digest)
        mismatch = receipt in (Receipt.MISMATCH, Receipt.NOT_APPROVED)
        risk = request.risk_level if request is not None else (policy.risk_level if policy else "")
        critical = mismatch or (not success and risk == RiskLevel.CRITICAL)
        # A second receipt of a request is kept apart from the request's own (one per request):
        # it can only be a mismatch here, as a second matching one is refused above.
        first = (
            request is not None and not Outcome.objects.filter(approval_request=request).exists()
        )
        try:
            with transaction.atomic():
                outcome = Outcome.objects.create(
                    agent=locked,
                    action=action,
                    params_sha256=digest,
                    approval_request=request if first else None,
                    named_request_id=request.pk if request is not None else None,
                    receipt=receipt,
                    approved_params_sha256=approved,
                    success=success,
                    error=error[:MAX_ERROR],
                    duration_ms=duration_ms,
                    cost_cents=cost_cents,
                    risk_level=risk,
                    category=policy.category if policy else "",
                    critical=critical,
                    created_at=now,
                )
        except IntegrityError:  # another report of this request committed first
            raise _already_reported(request) from None
        # Every write before the first audit append (which holds the chain's lock to COMMIT):
        # a pause or disable locks the agent's pending requests, which other calls lock before
        # they append; taken after an append, that order would deadlock.
        if mismatch:
            # The emergency shutdown. The breaker does not count it: re-enabling closes it.
            agents.set_agent_status(
                agent=locked, status=AgentStatus.DISABLED, reason=_mismatch_reason(outcome)
            )
        elif locked.status == AgentStatus.ACTIVE and not success:
            breaker.failed(locked, cause=breaker.FAILURE, now=now)
        elif locked.status == AgentStatus.ACTIVE and _closes(locked, outcome, policy is not None):
            breaker.succeeded(locked)
            transaction.on_commit(lambda: _forget_loop(locked.pk))
        if before_commit is not None:
            before_commit(outcome)  # the answer, with the breaker's count after this outcome
        record_event(
            event_type=EventType.OUTCOME_REPORTED,
            actor=locked,
            subject=outcome,
            payload={
                "action": action,
                "params_sha256": digest,
                "success": success,
                "error": error[:300],
                "request_id": request.pk if request else None,
                "receipt": receipt,
                "critical": critical,
                "consecutive_failures": locked.consecutive_failures,
            },
        )
        if mismatch:
            assert request is not None
            _record_mismatch(locked, outcome, request)
    return outcome


def _refuse_stopped(agent: Agent, *, receipt: bool) -> None:
    if agent.status == AgentStatus.ACTIVE or (agent.status == AgentStatus.PAUSED and receipt):
        return
    code = "agent_paused" if agent.status == AgentStatus.PAUSED else "agent_disabled"
    raise OutcomeRefused(f"Agent {agent.name} is {agent.status}.", code=code, status=403)


def _closes(agent: Agent, outcome: Outcome, known: bool) -> bool:
    """Whether a success closes the breaker and ends any loop. Only what can be checked does: a
    success of an action a policy covers, and, once the breaker is open (every check then asks
    a person), only the success of an approved request executed as approved."""
    return known and (agent.breaker_opened_at is None or outcome.receipt == Receipt.MATCHED)


def _receipt(
    agent: Agent, request_id: uuid.UUID | None, action: str, digest: str
) -> tuple[ApprovalRequest | None, str, str]:
    """The request a receipt names, how its execution compares, and the approved hash."""
    if request_id is None:
        return None, Receipt.NONE, ""
    request = ApprovalRequest.objects.filter(pk=request_id, agent=agent).first()
    if request is None:
        raise OutcomeRefused("No such approval request.", code="not_found", status=404)
    if request.status != Status.APPROVED:
        return request, Receipt.NOT_APPROVED, ""
    approved = request.approved_params_sha256
    # The hash covers the action when the agent sends params; sent as a hash, the action named
    # must be the request's too (in the form policies look names up in).
    same_action = action_key(action) == action_key(request.action)
    matched = approved == digest and same_action
    if matched and Outcome.objects.filter(approval_request=request).exists():
        raise _already_reported(request)
    return request, Receipt.MATCHED if matched else Receipt.MISMATCH, approved


def _already_reported(request: ApprovalRequest | None) -> OutcomeRefused:
    return OutcomeRefused(
        f"An outcome of approval request {request.pk if request else ''} was reported already; "
        "one approval is one execution.",
        code="already_reported",
        status=409,
    )


def _mismatch_reason(outcome: Outcome) -> str:
    return f"execution_mismatch: it {_what(outcome)}"


def _what(outcome: Outcome) -> str:
    request_id = outcome.named_request_id
    if outcome.receipt == Receipt.NOT_APPROVED:
        return f"executed approval request {request_id}, which was not approved"
    return f"executed other arguments than approval request {request_id} approved"


def _record_mismatch(agent: Agent, outcome: Outcome, request: ApprovalRequest) -> None:
    """SPEC §6's emergency shutdown, after the kill switch: the security event, the alert."""
    record_event(
        event_type=EventType.EXECUTION_MISMATCH,
        actor=agent,
        subject=outcome,
        payload={
            "request_id": request.pk,
            "request_status": request.status,
            "executed_action": outcome.action,
            "executed_params_sha256": outcome.params_sha256,
            "approved_params_sha256": outcome.approved_params_sha256,
        },
    )
    alerts.alert(
        AlertKind.EXECUTION_MISMATCH,
        f"Agent {agent.name} {_what(outcome)}. It is disabled; running it again takes two people.",
        agent=agent,
    )


def _forget_loop(agent_id: int) -> None:
    try:
        counters.forget_recent(agent_id)
    except UNAVAILABLE:  # its last calls lapse in 10 minutes; until then a repeat asks a person
        logger.warning("agent %s's recent calls not cleared after a success", agent_id)
