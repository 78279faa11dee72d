"""Cancel, escalate, expire, an agent's stop; and the final state's writes and audit events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from agents.models import Agent, AgentStatus
from approvals import effects, rules, signals
from approvals.binding import canonical_json
from approvals.models import (
    EXPIRED_REASON,
    ApprovalRequest,
    CallbackDelivery,
    EmailDelivery,
    EmailKind,
    Status,
)
from approvals.representation import represent
from approvals.services.errors import NotPending, RequestExpired
from audit.events import EventType
from audit.services import record_event
from budgets import admission
from guardrails import services as guardrails
from oversight import instruments

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
            signals.send_changed(request, signals.AGENT_STATUS)  # Slack redraws it frozen or not
            effects.after_commit(request, wake=effects.AGENT_STATUS)
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
    _timer_ran("expiry", request.expires_at)
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
    _timer_ran("escalation", request.escalates_at)
    return True


def _timer_ran(timer: str, due: datetime) -> None:
    """How late after its due time a committed escalation or expiry ran (ETA task or sweep)."""
    late = (timezone.now() - due).total_seconds()
    instruments.TIMER_LATENESS_SECONDS.labels(timer=timer).observe(max(late, 0.0))


def _escalate(request: ApprovalRequest, now: datetime) -> None:
    previous = _raise_tier(request, now)
    EmailDelivery.objects.create(
        request=request, kind=EmailKind.ESCALATED, tier=request.current_tier
    )
    signals.send_changed(request, signals.ESCALATED)  # before the audit append
    effects.after_commit(request, wake=effects.ESCALATED)
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
    # Receivers (Slack) write their outbox rows here: every path to a final state passes, and
    # before its first audit append.
    signals.send_changed(request, signals.closed_kind(status))


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
    effects.after_commit(request, wake=effects.FINISHED, callbacks=bool(request.callback_url))
    waited = ((request.decided_at or timezone.now()) - request.created_at).total_seconds()
    decided = instruments.APPROVAL_DECISION_SECONDS.labels(risk=request.risk_level, outcome=status)
    transaction.on_commit(lambda: decided.observe(waited))
