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
    (the API stores its idempotent answer there). Raises `OutcomeRefused`."""
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
        if locked.status != AgentStatus.ACTIVE:
            code = "agent_paused" if locked.status == AgentStatus.PAUSED else "agent_disabled"
            raise OutcomeRefused(f"Agent {locked.name} is {locked.status}.", code=code, status=403)
        request, receipt, approved = _receipt(locked, approval_request_id, digest)
        mismatch = receipt in (Receipt.MISMATCH, Receipt.NOT_APPROVED)
        critical = mismatch or (
            not success and policy is not None and policy.risk_level == RiskLevel.CRITICAL
        )
        try:
            with transaction.atomic():
                outcome = Outcome.objects.create(
                    agent=locked,
                    action=action,
                    params_sha256=digest,
                    approval_request=request,
                    receipt=receipt,
                    approved_params_sha256=approved,
                    success=success,
                    error=error[:MAX_ERROR],
                    duration_ms=duration_ms,
                    cost_cents=cost_cents,
                    risk_level=policy.risk_level if policy else "",
                    category=policy.category if policy else "",
                    critical=critical,
                    created_at=now,
                )
        except IntegrityError:  # another report of this request committed first
            raise _already_reported(request) from None
        # The breaker first: it writes, and the audit appends below hold the chain's lock. A
        # mismatch does not count: the agent is disabled below, and re-enabling it closes it.
        if success and not mismatch:
            breaker.succeeded(locked)
        elif not mismatch:
            breaker.failed(locked, cause=breaker.FAILURE, now=now)
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
            _mismatch(locked, outcome, request)
        if success and not mismatch:
            transaction.on_commit(lambda: _forget_loop(locked.pk))
    return outcome


def _receipt(
    agent: Agent, request_id: uuid.UUID | None, digest: str
) -> tuple[ApprovalRequest | None, str, str]:
    if request_id is None:
        return None, Receipt.NONE, ""
    request = ApprovalRequest.objects.filter(pk=request_id, agent=agent).first()
    if request is None:
        raise OutcomeRefused("No such approval request.", code="not_found", status=404)
    if Outcome.objects.filter(approval_request=request).exists():
        raise _already_reported(request)
    if request.status != Status.APPROVED:
        return request, Receipt.NOT_APPROVED, ""
    approved = request.approved_params_sha256
    return request, Receipt.MATCHED if approved == digest else Receipt.MISMATCH, approved


def _already_reported(request: ApprovalRequest | None) -> OutcomeRefused:
    return OutcomeRefused(
        f"An outcome of approval request {request.pk if request else ''} was reported already; "
        "one approval is one execution.",
        code="already_reported",
        status=409,
    )


def _mismatch(agent: Agent, outcome: Outcome, request: ApprovalRequest) -> None:
    """SPEC §6's emergency shutdown: the security event, the kill switch, the alert."""
    if outcome.receipt == Receipt.NOT_APPROVED:
        what = f"executed approval request {request.pk}, which is {request.status}, not approved"
    else:
        what = f"executed other arguments than approval request {request.pk} approved"
    record_event(
        event_type=EventType.EXECUTION_MISMATCH,
        actor=agent,
        subject=outcome,
        payload={
            "request_id": request.pk,
            "request_status": request.status,
            "executed_params_sha256": outcome.params_sha256,
            "approved_params_sha256": outcome.approved_params_sha256,
        },
    )
    agents.set_agent_status(
        agent=agent, status=AgentStatus.DISABLED, reason=f"execution_mismatch: it {what}"
    )
    alerts.alert(
        AlertKind.EXECUTION_MISMATCH,
        f"Agent {agent.name} {what}. It is disabled; running it again takes two people.",
        agent=agent,
    )


def _forget_loop(agent_id: int) -> None:
    try:
        counters.forget_recent(agent_id)
    except UNAVAILABLE:  # its last calls lapse in 10 minutes; until then a repeat asks a person
        logger.warning("agent %s's recent calls not cleared after a success", agent_id)
