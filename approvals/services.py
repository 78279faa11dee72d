"""Every state change of an approval request: create, vote, cancel, escalate, expire.

Each function runs in one transaction, locks the request row first (`select_for_update`), so
concurrent votes, cancels and timers on one request are settled by the database: exactly one of
them moves it out of `pending`, and final states never change. Each writes its audit events in
that transaction and schedules notifications with `transaction.on_commit`, so a rolled-back
change notifies nobody. The audit events come after every other write: from the first append to
COMMIT the chain's lock is held, and every audited change in the system (timers included) waits
for it, so nothing that can wait a round trip, least of all in a busy web process, sits there.
The exception is an agent's stop, which cancels its requests one by one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Tier, User
from agents.models import Agent, AgentStatus
from approvals import notify, rules, timers
from approvals.binding import canonical_json, params_sha256
from approvals.models import (
    EXPIRED_REASON,
    ApprovalRequest,
    CallbackDelivery,
    EmailDelivery,
    EmailKind,
    RiskLevel,
    Status,
    Urgency,
    Vote,
    VoteChoice,
)
from approvals.representation import represent
from audit.events import EventType
from audit.services import record_event
from budgets import admission
from guardrails import services as guardrails
from guardrails.models import CheckPurpose, PolicyVersion
from guardrails.rules import DENY, CompiledPolicy, Verdict
from guardrails.services import CheckOutcome
from oversight.fields import params_problem
from oversight.rows import insert_row


class ApprovalError(Exception):
    """A refused state change, with a stable code and the HTTP status the API answers with."""

    code = "conflict"
    status = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotPending(ApprovalError):
    code = "not_pending"


class RequestExpired(ApprovalError):
    code = "expired"


class AlreadyVoted(ApprovalError):
    code = "already_voted"


class NotAllowed(ApprovalError):
    code = "not_allowed"
    status = 403


class ArgumentsChanged(ApprovalError):
    code = "arguments_changed"


class Invalid(ApprovalError):
    code = "invalid"
    status = 422


class BudgetRefused(ApprovalError):
    code = "budget_exceeded"
    status = 403


class GuardrailDenied(ApprovalError):
    """The create's guardrails check answered deny: 403 with the deciding reason's code (e.g.
    `forbidden_pattern`, `budget_exceeded`) and every reason."""

    status = 403

    def __init__(self, check: CheckOutcome) -> None:
        deciding = check.verdict.deciding
        assert deciding is not None
        self.code = deciding.code
        self.check = check
        super().__init__(f"The guardrails refuse this action: {deciding.message}")

    @property
    def details(self) -> dict[str, Any]:
        return {
            "reasons": [reason.as_json() for reason in self.check.verdict.reasons],
            "violation_id": self.check.violation_id,
        }


class AgentStopped(ApprovalError):
    status = 403

    def __init__(self, agent: Agent) -> None:
        self.code = "agent_paused" if agent.status == AgentStatus.PAUSED else "agent_disabled"
        super().__init__(f"Agent {agent.name} is {agent.status}; it cannot ask for approvals.")


class EditRefused(ApprovalError):
    """An approver's edited arguments are denied by the guardrails (SPEC §2: changes are
    re-checked): the edit is refused with every reason; nothing changes."""

    status = 422

    def __init__(self, verdict: Verdict) -> None:
        deciding = verdict.deciding
        assert deciding is not None
        self.code = deciding.code
        self.reasons = verdict.reasons
        listed = "; ".join(reason.message for reason in verdict.reasons if reason.effect == DENY)
        super().__init__(f"The guardrails refuse the changed arguments: {listed}")


class AgentFrozen(ApprovalError):
    """A vote on a request of an agent that is paused or disabled (SPEC §2: a stopped agent's
    requests are frozen; nothing it asked for may be approved while it is stopped)."""

    def __init__(self, agent: Agent, message: str) -> None:
        self.code = "agent_paused" if agent.status == AgentStatus.PAUSED else "agent_disabled"
        super().__init__(message)


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
    _check_params_size(params)
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
            timers_queued_until=timers.horizon_end(now),
        )
        insert_row(request)
        # Read again now that the row holds the agent (its foreign key takes a share lock that a
        # pause or kill switch, which locks the agent for update, waits for or made this wait
        # for): either the stop sees this request among the pending ones, or this sees the stop.
        agent.refresh_from_db(fields=["status", "status_reason"])
        if agent.status != AgentStatus.ACTIVE:
            raise AgentStopped(agent)
        try:
            admission.reserve_for_request(request)
        except admission.BudgetExceeded as exc:
            raise BudgetRefused(str(exc)) from exc
        insert_row(EmailDelivery(request=request, kind=EmailKind.CREATED, tier=route[0]))
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
        notify.on_commit(request, notify.CREATED)
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
        _check_params_size(modified_params)
    with transaction.atomic():
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
            outcome = _cast(request, voter, choice, comment.strip(), modified_params, now)
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
) -> VoteOutcome:
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

    try:
        with transaction.atomic():
            vote = Vote.objects.create(
                request=request,
                voter=voter,
                voter_name=voter.display_name,
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
        },
    )
    if rerouted:
        notify.on_commit(request, notify.ESCALATED)
    if self_approval:
        record_event(
            event_type=EventType.REQUEST_SELF_APPROVED,
            actor=voter,
            subject=request,
            payload={"agent": request.agent.name, "vote": choice},
        )
    if outcome is not None:
        _record_close(request, decided_by=voter)
    else:
        notify.on_commit(request, notify.VOTED)
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
    notify.on_commit(request, notify.ESCALATED)


# --- cancel, escalate, expire --------------------------------------------------------------


def cancel_request(*, request_id: uuid.UUID, agent: Agent) -> ApprovalRequest:
    """The agent withdraws its pending request. Not pending → `NotPending` (409)."""
    with transaction.atomic():
        request = _lock(request_id)
        if request.agent_id != agent.pk:
            raise ApprovalRequest.DoesNotExist
        _ensure_pending(request)
        now = timezone.now()
        expired = request.is_overdue(now)
        if expired:
            _expire(request)
        else:
            _finalize(
                request, Status.CANCELLED, now=now, reason="Withdrawn by the agent.", actor=agent
            )
    if expired:
        raise RequestExpired("This request had expired already.")
    return request


def lock_pending(agent: Agent, *, cancelling: bool) -> list[ApprovalRequest]:
    """Lock an agent's pending requests for a change of its status (`agent_status_changed`).

    Its caller holds the agent's row lock and takes these before any audit append: locks are
    taken requests, then budget windows, then the audit chain's, by everyone (votes and creates
    included). So the budget reservations of requests about to be cancelled are given back here
    too, before the status change's own event. A vote that got in first is committed before the
    change sees its request; a later one reads the new status (`_vote`)."""
    pending = list(
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("agent", "policy_version")
        .filter(agent=agent, status=Status.PENDING)
        .order_by("pk")
    )
    if cancelling:
        # All at once, in budget order; `_finalize`'s own release then finds nothing left.
        admission.release_for_request([r.pk for r in pending if r.estimated_cost_cents])
    return pending


def agent_status_changed(
    *, agent: Agent, pending: list[ApprovalRequest], reason: str, actor: User | None
) -> int:
    """Apply an agent's new status to its pending requests (`lock_pending`), in the status
    change's transaction. Disabled (the kill switch): each is cancelled with the reason, so the
    agent's waiters and callbacks hear `cancelled` now. Paused or resumed: each stays pending,
    and the open inboxes redraw its row frozen or votable. Returns how many were cancelled."""
    cancelled = 0
    for request in pending:
        if agent.status != AgentStatus.DISABLED:
            notify.on_commit(request, notify.AGENT_STATUS)
        elif request.is_overdue():
            _expire(request)
        else:
            _finalize(
                request,
                Status.CANCELLED,
                now=timezone.now(),
                reason=f"Agent {agent.name} was disabled: {reason}",
                actor=actor,
            )
            cancelled += 1
    return cancelled


def expire_request(*, request_id: uuid.UUID) -> bool:
    """Expire a pending request whose time is up. Idempotent: False when nothing changed.

    An escalation missed meanwhile (no worker at half-time) is recorded first, so every expired
    request shows its escalation in the audit trail, once."""
    with transaction.atomic():
        request = _lock(request_id, missing_ok=True)
        now = timezone.now()
        if request is None or not request.is_overdue(now):
            return False
        _expire(request)
    return True


def escalate_request(*, request_id: uuid.UUID) -> bool:
    """At half-time, add the route's next tier (once). Idempotent: False when nothing changed.

    A request past its expiry is not escalated here: its expiry catches the escalation up."""
    with transaction.atomic():
        request = _lock(request_id, missing_ok=True)
        now = timezone.now()
        if (
            request is None
            or request.status != Status.PENDING
            or request.escalated_at is not None
            or now < request.escalates_at
            or request.is_overdue(now)
        ):
            return False
        _escalate(request, now)
    return True


def _escalate(request: ApprovalRequest, now: datetime) -> None:
    previous = _raise_tier(request, now)
    EmailDelivery.objects.create(
        request=request, kind=EmailKind.ESCALATED, tier=request.current_tier
    )
    notify.on_commit(request, notify.ESCALATED)
    _record_escalation(request, previous)


def _raise_tier(request: ApprovalRequest, now: datetime) -> str:
    """`_escalate`'s change to the row; returns the tier it was at."""
    previous = request.current_tier
    target = rules.escalation_target(request.route)
    request.escalated_at = now
    request.escalation_level = 1
    if target is None:
        request.escalation_flagged = True  # at the top already: stays, flagged
    else:
        request.current_tier = target
    request.save(
        update_fields=["escalated_at", "escalation_level", "escalation_flagged", "current_tier"]
    )
    return previous


def _record_escalation(request: ApprovalRequest, previous: str) -> None:
    record_event(
        event_type=EventType.REQUEST_ESCALATED,
        subject=request,
        payload={
            "from_tier": previous,
            "to_tier": request.current_tier,
            "flagged": request.escalation_flagged,
            "due_at": request.escalates_at.isoformat(),
        },
    )


def _expire(request: ApprovalRequest) -> None:
    """A request expires at its deadline, whenever the sweep (or a late vote or cancel) finds
    it: `decided_at` is `expires_at`, as every read reported since then, and an escalation
    caught up on the way is dated then too, never after (and tells nobody: a request expiring
    in the same breath needs nobody's attention). The audit events say when each was
    recorded."""
    previous = None
    if request.escalated_at is None:
        previous = _raise_tier(request, request.expires_at)
    _close(request, Status.EXPIRED, now=request.expires_at, reason=EXPIRED_REASON)
    if previous is not None:
        _record_escalation(request, previous)
    _record_close(request, decided_by=None)


# --- helpers -------------------------------------------------------------------------------


def _lock(request_id: uuid.UUID, *, missing_ok: bool = False) -> Any:
    queryset = ApprovalRequest.objects.select_for_update(of=("self",)).select_related(
        "agent", "policy_version"
    )
    try:
        return queryset.get(pk=request_id)
    except ApprovalRequest.DoesNotExist:
        if missing_ok:
            return None
        raise


def _ensure_pending(request: ApprovalRequest) -> None:
    if request.status != Status.PENDING:
        raise NotPending(f"This request is {request.status} already; final states never change.")


def _release_hold(request: ApprovalRequest) -> None:
    """Give back the budget a request not going ahead had reserved. Locks are taken in one
    order everywhere: the request, then budget windows, then the audit chain; so this comes
    before a path's first audit append (a create holds a window and waits for the chain).
    Idempotent: a second call finds nothing left to release."""
    if request.estimated_cost_cents:
        admission.release_for_request(request.pk)


def _finalize(
    request: ApprovalRequest,
    status: str,
    *,
    now: datetime,
    decided_by: User | None = None,
    reason: str = "",
    actor: User | Agent | None = None,
) -> None:
    """Move a locked pending request to its final state, audit it, queue its callback."""
    _close(request, status, now=now, decided_by=decided_by, reason=reason)
    _record_close(request, decided_by=decided_by, actor=actor)


def _close(
    request: ApprovalRequest,
    status: str,
    *,
    now: datetime,
    decided_by: User | None = None,
    reason: str = "",
) -> None:
    """`_finalize`'s writes, for a path that makes them before its first audit append."""
    request.status = status
    request.decided_at = now
    request.decided_by = decided_by
    request.decision_reason = reason
    if status == Status.APPROVED:
        request.approved_params_sha256 = request.current_params_sha256
    request.timer_token = uuid.uuid4()  # any timer still scheduled is now moot
    if status != Status.APPROVED:
        _release_hold(request)  # before the audit append (lock order)
    request.save(
        update_fields=[
            "status",
            "decided_at",
            "decided_by",
            "decision_reason",
            "approved_params_sha256",
            "timer_token",
        ]
    )
    if request.callback_url:
        CallbackDelivery.objects.create(
            request=request,
            url=request.callback_url,
            body=canonical_json(represent(request)).decode(),
        )


def _record_close(
    request: ApprovalRequest, *, decided_by: User | None, actor: User | Agent | None = None
) -> None:
    """`_finalize`'s audit events (after `_close`), and the news of the outcome on commit."""
    status = request.status
    event = {
        Status.APPROVED: EventType.REQUEST_DECIDED,
        Status.REJECTED: EventType.REQUEST_DECIDED,
        Status.EXPIRED: EventType.REQUEST_EXPIRED,
        Status.CANCELLED: EventType.REQUEST_CANCELLED,
    }[Status(status)]
    record_event(
        event_type=event,
        actor=actor or decided_by,
        subject=request,
        payload={
            "outcome": status,
            "reason": request.decision_reason,
            "approved_params_sha256": request.approved_params_sha256,
            "modified": request.modified_params is not None,
        },
    )
    version = request.policy_version
    if status == Status.APPROVED and version is not None and version.snapshot.get("sensitive"):
        guardrails.record_access(
            agent=request.agent,
            policy={"name": version.name, "version": version.version},
            params_sha256=request.approved_params_sha256,
            approved_by=decided_by,
        )
    notify.on_commit(request, notify.FINISHED)


def _check_params_size(params: dict[str, Any]) -> None:
    problem = params_problem(params)
    if problem:
        raise Invalid(problem)


__all__ = [
    "AgentFrozen",
    "AgentStopped",
    "AlreadyVoted",
    "ApprovalError",
    "BudgetRefused",
    "EditRefused",
    "GuardrailDenied",
    "Invalid",
    "NotAllowed",
    "NotPending",
    "RequestExpired",
    "RiskLevel",
    "agent_status_changed",
    "approve_request",
    "cancel_request",
    "create_request",
    "escalate_request",
    "expire_request",
    "lock_pending",
    "reject_request",
]
