"""The one JSON representation of a request (SPEC §3), for the API, callbacks and replays."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse

from approvals.models import EXPIRED_REASON, ApprovalRequest, Status, Vote
from controls.models import Outcome


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def _vote(vote: Vote) -> dict[str, Any]:
    return {
        "who": vote.voter_name,
        "username": vote.voter.username if vote.voter_id else None,
        "vote": vote.vote,
        "comment": vote.comment,
        "at": iso(vote.created_at),
        "params_sha256": vote.params_sha256,
        "modified_params": vote.modified_params,
        "voided": vote.voided_at is not None,
        "self_approval": vote.is_self_approval,
        "on_behalf_of": vote.on_behalf_of_name or None,
    }


def page_url(request: ApprovalRequest) -> str:
    """The absolute address of the request's page, for agents and emails."""
    return settings.OVERSIGHT_BASE_URL + reverse("approvals:detail", args=[request.pk])


def represent(request: ApprovalRequest, *, votes: list[Vote] | None = None) -> dict[str, Any]:
    """Serialise a request. An overdue pending request reads as `expired` (SPEC §2)."""
    status = Status.EXPIRED if request.is_overdue() else request.status
    if votes is None:
        votes = list(request.votes.select_related("voter").order_by("created_at"))
    decision = None
    if status != Status.PENDING:
        decision = {
            "outcome": status,
            "decided_at": iso(request.decided_at or request.expires_at),
            "decided_by": request.decided_by.username
            if request.decided_by_id and request.decided_by
            else None,
            "reason": request.decision_reason
            or (EXPIRED_REASON if status == Status.EXPIRED else ""),
            "modified_params": request.modified_params if status == Status.APPROVED else None,
            "approved_params_sha256": request.approved_params_sha256 or None,
        }
    return {
        "id": str(request.pk),
        "status": status,
        "action": request.action,
        "params": request.params,
        "params_sha256": request.params_sha256,
        "risk_level": request.risk_level,
        "claimed_risk_level": request.claimed_risk_level,
        "risk_source": request.risk_source,
        "urgency": request.urgency,
        "justification": request.justification,
        "confidence": request.confidence,
        "estimated_cost_cents": request.estimated_cost_cents,
        "callback_url": request.callback_url or None,
        "created_at": iso(request.created_at),
        "expires_at": iso(request.expires_at),
        "escalates_at": iso(request.escalates_at),
        "escalated_at": iso(request.escalated_at),
        "escalation_level": request.escalation_level,
        "current_tier": request.current_tier,
        "required_approvals": request.required_approvals,
        "approvals": [_vote(vote) for vote in votes],
        "decision": decision,
        "url": page_url(request),
        "policy": _policy(request),
        "reasons": request.check_reasons,
        "receipt": _receipt(request),
    }


def _receipt(request: ApprovalRequest) -> dict[str, Any] | None:
    """The outcome the agent reported executing the request with (SPEC §6), or None.

    Reads that list requests select it with them (`selectors.requests_of`). A pending request
    has none, without asking the database (a create is the hot path): a report naming a
    request that is not approved disables the agent, which cancels its pending requests in
    the same transaction."""
    if request.status == Status.PENDING:
        return None
    try:
        outcome = request.receipt
    except Outcome.DoesNotExist:
        return None
    return {
        "outcome_id": str(outcome.pk),
        "success": outcome.success,
        "receipt": outcome.receipt,
        "executed_params_sha256": outcome.params_sha256,
        "reported_at": iso(outcome.created_at),
    }


def _policy(request: ApprovalRequest) -> dict[str, Any] | None:
    version = request.policy_version
    if version is None:
        return None
    return {"name": version.name, "version": version.version, "scope": version.scope}
