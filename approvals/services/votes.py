"""Approving and rejecting: a person's vote, an approver's edit re-checked, the decision."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Tier, User
from agents.models import Agent
from approvals import effects, rules, signals
from approvals.binding import params_sha256
from approvals.models import (
    ApprovalRequest,
    EmailDelivery,
    EmailKind,
    RiskLevel,
    Status,
    Vote,
    VoteChoice,
)
from approvals.services.errors import (
    AgentFrozen,
    AlreadyVoted,
    ArgumentsChanged,
    EditRefused,
    Invalid,
    NotAllowed,
    RequestExpired,
    check_params_size,
)
from approvals.services.lifecycle import _close, _ensure_pending, _expire, _lock, _record_close
from audit.events import EventType
from audit.services import record_event
from budgets import admission
from controls import breaker
from guardrails import services as guardrails
from guardrails.models import PolicyVersion
from guardrails.rules import DENY

# --- vote ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoteOutcome:
    request: ApprovalRequest
    vote: Vote | None  # None: an edit that raised the risk beyond what its editor may decide
    decided: bool


def approve_request(
    *,
    request_id: uuid.UUID,
    reviewer: User,
    comment: str = "",
    modified_params: dict[str, Any] | None = None,
    seen_params_sha256: str | None = None,
) -> VoteOutcome:
    """Approve, or approve with changes (`modified_params` replaces the arguments).

    `seen_params_sha256` is the hash of the arguments the reviewer was shown; if another
    approver changed them meanwhile, the approval is refused (`ArgumentsChanged`) rather than
    bound to arguments the reviewer never saw.
    """
    return _vote(
        request_id=request_id,
        voter=reviewer,
        choice=VoteChoice.APPROVE,
        comment=comment,
        modified_params=modified_params,
        seen_params_sha256=seen_params_sha256,
    )


def reject_request(*, request_id: uuid.UUID, reviewer: User, reason: str) -> VoteOutcome:
    """Reject with a reason; any single rejection rejects the request."""
    if not reason.strip():
        raise Invalid(
            "Say why you reject this request; the agent and the audit trail need the reason."
        )
    return _vote(
        request_id=request_id,
        voter=reviewer,
        choice=VoteChoice.REJECT,
        comment=reason,
        modified_params=None,
    )


def _vote(
    *,
    request_id: uuid.UUID,
    voter: User,
    choice: str,
    comment: str,
    modified_params: dict[str, Any] | None,
    seen_params_sha256: str | None = None,
) -> VoteOutcome:
    if modified_params is not None:
        if not isinstance(modified_params, dict):
            raise Invalid("Changed parameters must be a JSON object.")
        check_params_size(modified_params)
    with transaction.atomic():
        agent = None
        if choice == VoteChoice.REJECT:
            # A rejection counts against the agent's circuit breaker (SPEC §6): its row is
            # locked first, in the order a pause or kill switch takes the two.
            agent_id = ApprovalRequest.objects.values_list("agent_id", flat=True).get(pk=request_id)
            agent = breaker.lock(agent_id)
        request = _lock(request_id)
        _ensure_pending(request)
        now = timezone.now()
        if request.is_overdue(now):
            _expire(request)
            outcome: VoteOutcome | None = None
        else:
            # Read now, not with the locked row: a pause or kill switch that committed while
            # this vote waited for the lock must be seen. (`agent_status_changed` locks the agent's
            # pending requests, so a stop and a vote on one of them never interleave.)
            request.agent.refresh_from_db(fields=["status", "status_reason"])
            frozen = rules.frozen(request.agent)
            if frozen:
                raise AgentFrozen(request.agent, frozen)
            if seen_params_sha256 and seen_params_sha256 != request.current_params_sha256:
                raise ArgumentsChanged(
                    "Another approver changed the arguments while you were reviewing them; "
                    "look at the new ones before you approve."
                )
            outcome = _cast(request, voter, choice, comment.strip(), modified_params, now, agent)
    if outcome is None:
        # The expiry above is committed; the vote itself is refused (SPEC §2, fail safe).
        raise RequestExpired("This request expired before your vote; it counts as not approved.")
    return outcome


def _cast(
    request: ApprovalRequest,
    voter: User,
    choice: str,
    comment: str,
    modified_params: dict[str, Any] | None,
    now: datetime,
    agent: Agent | None = None,
) -> VoteOutcome:
    """`agent`: the request's agent, locked, for a rejection (it counts on its breaker)."""
    refusal = rules.refusal_to_decide(voter, request)
    if refusal:
        raise NotAllowed(refusal)
    if request.votes.filter(voter=voter, voided_at__isnull=True).exists():
        raise AlreadyVoted("You have voted on this request already.")
    self_approval = rules.is_self_approval(voter, request)

    changed = False
    rerouted: dict[str, Any] | None = None
    if choice == VoteChoice.APPROVE and modified_params is not None:
        # The digest of the canonical JSON compares exactly: `1` and `true` differ.
        new_digest = params_sha256(request.action, modified_params)
        if new_digest != request.current_params_sha256:
            changed = True
            rerouted = _recheck_edit(request, modified_params, now)
            # Earlier approvals were for other arguments: they no longer count (SPEC §2).
            request.votes.filter(vote=VoteChoice.APPROVE, voided_at__isnull=True).update(
                voided_at=now
            )
            request.modified_params = modified_params
            request.current_params_sha256 = new_digest
            request.save(update_fields=["modified_params", "current_params_sha256"])
            if rerouted and rules.refusal_to_decide(voter, request):
                # The edit stands; as an approval it counts only from someone who may decide
                # at the new risk (SPEC §2).
                _record_edit(request, voter, comment, rerouted)
                return VoteOutcome(request=request, vote=None, decided=False)

    live = request.votes.filter(voided_at__isnull=True)
    for_me = live.filter(on_behalf_of=voter).first()
    if for_me is not None:
        # One vote per person, theirs or cast for them while they were away (SPEC §2 quorum).
        raise AlreadyVoted(f"{for_me.voter_name} already voted on this request on your behalf.")
    principal = rules.stood_in_for(voter, request, now)
    if principal is not None and live.filter(voter=principal).exists():
        principal = None  # they voted themselves: this vote is the stand-in's own
    try:
        with transaction.atomic():
            vote = Vote.objects.create(
                request=request,
                voter=voter,
                voter_name=voter.display_name,
                on_behalf_of=principal,
                on_behalf_of_name=principal.display_name if principal else "",
                vote=choice,
                comment=comment,
                params_sha256=request.current_params_sha256,
                modified_params=modified_params if changed else None,
                is_self_approval=self_approval,
                created_at=now,
            )
    except IntegrityError as exc:  # the constraint backs up the check above
        raise AlreadyVoted("You have voted on this request already.") from exc

    # Every write comes before the first audit append: the append lock is held from there to
    # COMMIT, and a web process short of CPU would hold it across each round trip after it.
    outcome = Status.REJECTED if choice == VoteChoice.REJECT else None
    if outcome is None:
        approvals = (
            request.votes.filter(
                vote=VoteChoice.APPROVE,
                voided_at__isnull=True,
                params_sha256=request.current_params_sha256,
            )
            .values("voter")
            .distinct()
            .count()
        )
        if approvals >= request.required_approvals:
            outcome = Status.APPROVED
    if outcome is not None:
        _close(request, outcome, now=now, decided_by=voter, reason=comment)
    if outcome == Status.REJECTED and agent is not None:
        breaker.failed(agent, cause=breaker.REJECTION, now=now)
    raises = []
    if outcome == Status.APPROVED and request.asked_for_budget:
        raises = admission.raise_for_approval(request)
    if outcome is None:  # a final state tells the receivers itself (`_close`)
        signals.send_changed(request, signals.REROUTED if rerouted else signals.VOTED)
    record_event(
        event_type=EventType.REQUEST_VOTED,
        actor=voter,
        subject=request,
        payload={
            "vote": choice,
            "comment": comment,
            "params_sha256": vote.params_sha256,
            "changed_params": changed,
            "tier": voter.tier,
            **({"rerouted": rerouted} if rerouted else {}),
            **({"on_behalf_of": principal.username} if principal else {}),
        },
    )
    if rerouted:
        effects.after_commit(request, wake=effects.ESCALATED)
    if self_approval:
        record_event(
            event_type=EventType.REQUEST_SELF_APPROVED,
            actor=voter,
            subject=request,
            payload={"agent": request.agent.name, "vote": choice},
        )
    for raised in raises:
        record_event(
            event_type=EventType.BUDGET_RAISED,
            actor=voter,
            subject=("budget", str(raised.budget_id)),
            payload={
                "budget": raised.label,
                "window_start": raised.window_start,
                "amount_cents": str(raised.amount_cents),
                "raised_cents": str(raised.raised_cents),
                "request": str(request.pk),
                "agent": request.agent.name,
            },
        )
    if outcome is not None:
        _record_close(request, decided_by=voter)
    else:
        effects.after_commit(request, wake=effects.VOTED)
    decided = outcome is not None
    return VoteOutcome(request=request, vote=vote, decided=decided)


def _recheck_edit(
    request: ApprovalRequest, params: dict[str, Any], now: datetime
) -> dict[str, Any] | None:
    """Run the guardrails over an approver's edited arguments before they replace the agent's
    (SPEC §2: changes are re-checked, as if the agent had sent them). A deny refuses the edit,
    with every reason. A higher risk re-routes the request: its risk, route, tier and quorum
    become the new risk's (never lower than they were). Returns what the re-routing changed,
    for the audit trail, or None."""
    try:
        verdict = guardrails.recheck_edit(
            agent=request.agent,
            action=request.action,
            params=params,
            estimated_cost_cents=request.estimated_cost_cents,
            confidence=request.confidence,
            risk_level=request.risk_level,
        )
    except guardrails.InvalidParams as exc:
        raise Invalid(str(exc)) from exc
    if verdict.decision == DENY:
        raise EditRefused(verdict)
    risk = verdict.risk_level or request.risk_level
    if RiskLevel.rank(risk) <= RiskLevel.rank(request.risk_level):
        return None
    before = {
        "risk_level": request.risk_level,
        "route": request.route,
        "required_approvals": request.required_approvals,
    }
    route = rules.route_for(risk)
    if verdict.raise_tier:  # as for the agent's own create: its confidence is below 0.3
        route = rules.raised(route)
    if Tier.rank(route[0]) < request.first_tier_rank:  # never below where it was routed
        first = request.route[0]
        route = [first, *(tier for tier in route if Tier.rank(tier) > Tier.rank(first))]
    previous_tier = request.current_tier
    # Where the new route has the request now: its first tier, or, once escalated, the tier
    # escalation takes it to (flagged at the top); never lower than it already was.
    tier = route[0]
    if request.escalated_at is not None:
        target = rules.escalation_target(route)
        tier = target or route[-1]
        request.escalation_flagged = target is None
    if Tier.rank(tier) > Tier.rank(request.current_tier):
        request.current_tier = tier
    request.risk_level = risk
    request.route = route
    request.first_tier_rank = Tier.rank(route[0])
    request.required_approvals = rules.required_approvals(risk)
    # The decision record names the policy and reasons that now apply.
    policy = verdict.policy
    request.policy_version = (
        PolicyVersion.objects.get(pk=policy.version_id)  # whole: a decision reads its snapshot
        if policy is not None and policy.version_id is not None
        else None
    )
    request.check_reasons = [reason.as_json() for reason in verdict.reasons]
    request.risk_source = verdict.risk_source
    request.save(
        update_fields=[
            "risk_level",
            "route",
            "first_tier_rank",
            "current_tier",
            "escalation_flagged",
            "required_approvals",
            "policy_version",
            "check_reasons",
            "risk_source",
        ]
    )
    if request.current_tier != previous_tier:  # the people who may decide it now hear of it
        EmailDelivery.objects.create(
            request=request, kind=EmailKind.ESCALATED, tier=request.current_tier
        )
    return {
        "before": before,
        "after": {
            "risk_level": risk,
            "route": route,
            "required_approvals": request.required_approvals,
        },
    }


def _record_edit(
    request: ApprovalRequest, editor: User, comment: str, rerouted: dict[str, Any]
) -> None:
    signals.send_changed(request, signals.REROUTED)  # receivers write rows before the append
    record_event(
        event_type=EventType.REQUEST_EDITED,
        actor=editor,
        subject=request,
        payload={
            "comment": comment,
            "params_sha256": request.current_params_sha256,
            "rerouted": rerouted,
            "counted_as_approval": False,
        },
    )
    effects.after_commit(request, wake=effects.ESCALATED)
