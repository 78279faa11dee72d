"""Opening a request: the guardrails check, then the row, its budget hold and its audit event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Tier
from agents.models import Agent, AgentStatus
from approvals import deadlines, effects, rules, signals
from approvals.models import (
    ApprovalRequest,
    EmailDelivery,
    EmailKind,
    RiskLevel,
    Urgency,
)
from approvals.services.errors import (
    AgentStopped,
    BudgetRefused,
    GuardrailDenied,
    Invalid,
    check_params_size,
)
from audit.events import EventType
from audit.services import record_event
from budgets import admission
from guardrails import services as guardrails
from guardrails.models import CheckPurpose, PolicyVersion
from guardrails.rules import CompiledPolicy, budget_reason
from oversight import instruments
from oversight.rows import insert_row

# --- create --------------------------------------------------------------------------------


def create_request(
    *,
    agent: Agent,
    action: str,
    params: dict[str, Any],
    justification: str,
    risk_level: str | None = None,
    urgency: str = Urgency.NORMAL,
    confidence: float | None = None,
    estimated_cost_cents: int | None = None,
    timeout_seconds: int | None = None,
    callback_url: str = "",
    before_commit: Callable[[ApprovalRequest], None] | None = None,
) -> ApprovalRequest:
    """Open a pending request routed to its route's first tier (SPEC §2).

    The guardrails check runs first (SPEC §6): a deny refuses the create (`GuardrailDenied`,
    with its violation recorded), otherwise the effective risk is the higher of the claim and
    the policy's, and a confidence below 0.3 starts the request one tier higher. Call it outside
    a transaction, so that a refused create's violation is kept; `before_commit` runs inside the
    create's own transaction (the API completes its idempotency record there).

    Raises `Invalid` for semantic errors (a timeout longer than the urgency allows, ...) and
    `AgentStopped` for a paused or disabled agent.
    """
    if agent.status != AgentStatus.ACTIVE:
        raise AgentStopped(agent)
    if urgency not in Urgency.values:
        raise Invalid(f"Unknown urgency {urgency!r}.")
    if risk_level is not None and risk_level not in RiskLevel.values:
        raise Invalid(f"Unknown risk level {risk_level!r}.")
    limit = Urgency.time_limit(urgency)
    if timeout_seconds is not None and not 1 <= timeout_seconds <= limit.total_seconds():
        raise Invalid(
            f"timeout_seconds must be between 1 and {int(limit.total_seconds())} for "
            f"{urgency} urgency; an agent may shorten its time limit, never lengthen it."
        )
    if not justification.strip():
        raise Invalid("A justification is required.")
    check_params_size(params)
    check = guardrails.check_action(
        agent=agent,
        action=action,
        params=params,
        estimated_cost_cents=estimated_cost_cents,
        confidence=confidence,
        claimed_risk=risk_level,
        purpose=CheckPurpose.CREATE,
    )
    if check.denied:
        raise GuardrailDenied(check)
    verdict = check.verdict
    # Not a deny, so a policy (or the unknown-action setting, at high) set a risk.
    effective = verdict.risk_level
    assert effective is not None
    route = rules.route_for(effective)
    if verdict.raise_tier:
        route = rules.raised(route)

    # No savepoint: a failure must doom the caller's transaction anyway, and the two extra
    # round trips would sit inside the audit append lock's critical section.
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        times = rules.deadlines(created_at=now, urgency=urgency, timeout_seconds=timeout_seconds)
        digest = check.params_sha256
        request = ApprovalRequest(
            agent=agent,
            owner_at_request_id=agent.owner_id,
            action=action,
            params=params,
            params_sha256=digest,
            current_params_sha256=digest,
            risk_level=effective,
            claimed_risk_level=risk_level or effective,
            risk_source=verdict.risk_source,
            policy_version=_version_of(verdict.policy),
            check_reasons=[reason.as_json() for reason in verdict.reasons],
            urgency=urgency,
            justification=justification.strip(),
            confidence=confidence,
            estimated_cost_cents=estimated_cost_cents,
            callback_url=callback_url,
            created_at=now,
            expires_at=times.expires_at,
            escalates_at=times.escalates_at,
            route=route,
            current_tier=route[0],
            first_tier_rank=Tier.rank(route[0]),
            required_approvals=rules.required_approvals(effective),
            timers_queued_until=deadlines.horizon_end(now),
        )
        insert_row(request)
        # Read again now that the row holds the agent (its foreign key takes a share lock that a
        # pause or kill switch, which locks the agent for update, waits for or made this wait
        # for): either the stop sees this request among the pending ones, or this sees the stop.
        agent.refresh_from_db(fields=["status", "status_reason"])
        if agent.status != AgentStatus.ACTIVE:
            raise AgentStopped(agent)
        try:
            asking = admission.reserve_for_request(request)
        except admission.BudgetExceeded as exc:
            raise BudgetRefused(str(exc)) from exc
        if asking and "budget_exceeded" not in verdict.codes:
            # A budget in ask mode ran out between the check and now: the record says so.
            verdict = verdict.with_reason(budget_reason(asking))
            request.check_reasons = [reason.as_json() for reason in verdict.reasons]
            request.save(update_fields=["check_reasons"])
        insert_row(EmailDelivery(request=request, kind=EmailKind.CREATED, tier=route[0]))
        signals.send_changed(request, signals.CREATED)  # receivers write outbox rows
        if before_commit is not None:
            before_commit(request)  # before the audit append, which holds its lock to COMMIT
        record_event(
            event_type=EventType.REQUEST_CREATED,
            actor=agent,
            subject=request,
            payload={
                "action": action,
                "params_sha256": digest,
                "risk_level": effective,
                "claimed_risk_level": request.claimed_risk_level,
                "risk_source": verdict.risk_source,
                "policy": verdict.policy.name if verdict.policy else None,
                "policy_version": verdict.policy.version if verdict.policy else None,
                "reasons": verdict.codes,
                "urgency": urgency,
                "expires_at": request.expires_at.isoformat(),
                "tier": request.current_tier,
            },
        )
        # A new request wakes no long-poll: they wait for their request to leave pending.
        effects.after_commit(request, wake=None, timers=deadlines.handed_over_at_creation(request))
    instruments.APPROVAL_REQUESTS_CREATED.labels(risk=effective).inc()
    return request


def _version_of(policy: CompiledPolicy | None) -> PolicyVersion | None:
    """The version row the check applied, as far as the request's representation reads it:
    the check knows these fields already, so nothing is read back from the database."""
    if policy is None or policy.version_id is None:
        return None
    version = PolicyVersion(
        pk=policy.version_id, name=policy.name, scope=policy.scope, version=policy.version
    )
    version._state.adding = False
    return version
