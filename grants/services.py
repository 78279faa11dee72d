"""Making and revoking standing approvals (grants): `approve_and_grant`, `revoke_grant`.

A grant is made only together with the approval that decides its request, in the same
transaction: both happen or neither. It is never wider than what its granter may decide (the
vote's own check, and the risk, route and policy of the request it comes from), never for a
critical request, at most for seven days. Using and voiding one is the check's business:
`grants.uses`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from approvals import rules as approval_rules
from approvals.binding import canonical_json, params_sha256
from approvals.models import ApprovalRequest, RiskLevel, Status
from approvals.services import ApprovalError, RequestExpired, VoteOutcome, approve_request
from audit.events import EventType
from audit.services import record_event
from grants import rules
from grants.models import Grant, GrantKind
from grants.selectors import sees_all
from guardrails import selectors as guardrail_selectors
from guardrails.rules import action_key


class GrantRefused(ApprovalError):
    """Terms a grant may not have, or a person who may not grant (nothing was changed: the
    approval it came with is refused too)."""

    code = "grant_refused"
    status = 422


class RevokeNotAllowed(GrantRefused):
    code = "not_allowed"
    status = 403


@dataclass(frozen=True)
class GrantTerms:
    """What the approver chose. `pins` (for `pinned`): argument name → "" for its approved value,
    or a prefix (path-like arguments only) the value must lie under."""

    kind: str
    pins: Mapping[str, str] = field(default_factory=dict)
    lifetime: timedelta | None = None
    max_uses: int | None = None


def refusal_to_grant(user: User, request: ApprovalRequest) -> str | None:
    """Why `user` may not make a grant from `request`, or None: the request's reasons
    (`refusal_for_request`), then the vote's own rule of who may decide it."""
    return refusal_for_request(request) or approval_rules.refusal_to_decide(user, request)


def refusal_for_request(request: ApprovalRequest) -> str | None:
    """Why no grant may come from `request`, whoever approves it, or None (the request page
    asks this to offer the choice; `approve_and_grant` asks again under the request's lock)."""
    if request.risk_level == RiskLevel.CRITICAL:
        return "Critical actions need two people every time: they cannot be allowed in advance."
    if request.policy_version_id is None:
        return "No policy covers this action, so every call of it needs a person."
    current = guardrail_selectors.policy_set().policy_for(request.agent, request.action)
    if current is None or current.version_id != request.policy_version_id:
        return (
            f"The policy for {request.action} changed since this request was made; a grant made "
            "under the old one would be void at once."
        )
    return None


def approve_and_grant(
    *,
    request_id: uuid.UUID,
    reviewer: User,
    terms: GrantTerms,
    comment: str = "",
    modified_params: dict[str, Any] | None = None,
    seen_params_sha256: str | None = None,
) -> tuple[VoteOutcome, Grant]:
    """Approve a request (as `approvals.services.approve_request`) and, with the same vote,
    allow calls like it again: this exact call, or this action with pinned arguments (the
    approved ones, edits included), for a lifetime and/or a number of uses.

    One transaction: a grant that may not be made (`GrantRefused`) refuses the approval too,
    so the person can choose again. The approval must decide the request (one is enough below
    critical risk; an edit that raised the risk beyond the approver is refused here)."""
    try:  # the terms' numbers first: a refusal costs no lock, no vote
        rules.expiry(timezone.now(), lifetime=terms.lifetime, max_uses=terms.max_uses)
    except rules.GrantProblem as exc:
        raise GrantRefused(str(exc)) from None
    if terms.kind not in GrantKind.values:
        raise GrantRefused("Choose this exact call, or this action with pinned arguments.")
    expired: RequestExpired | None = None
    with transaction.atomic():
        try:
            outcome = approve_request(
                request_id=request_id,
                reviewer=reviewer,
                comment=comment,
                modified_params=modified_params,
                seen_params_sha256=seen_params_sha256,
            )
        except RequestExpired as exc:
            expired = exc  # the approval's own expiry is written: it commits; no grant
        else:
            grant = _make(outcome, reviewer, terms)
    if expired is not None:
        raise expired
    return outcome, grant


def _make(outcome: VoteOutcome, granter: User, terms: GrantTerms) -> Grant:
    request = outcome.request
    refusal = refusal_to_grant(granter, request)
    if refusal:
        raise GrantRefused(refusal)
    if not outcome.decided or request.status != Status.APPROVED:
        raise GrantRefused(
            "A standing approval comes with the approval that decides its request; this one "
            "still needs other people, so nothing was recorded."
        )
    assert request.policy_version_id is not None  # refusal_for_request says so
    now = timezone.now()
    key = action_key(request.action)
    params = request.effective_params
    try:
        expires_at = rules.expiry(now, lifetime=terms.lifetime, max_uses=terms.max_uses)
        pins = rules.build_pins(params, terms.pins) if terms.kind == GrantKind.PINNED else {}
    except rules.GrantProblem as exc:
        raise GrantRefused(str(exc)) from None
    grant = Grant.objects.create(
        agent=request.agent,
        action=key,
        kind=terms.kind,
        params_sha256=params_sha256(key, params) if terms.kind == GrantKind.EXACT else "",
        pins=pins,
        risk_level=request.risk_level,
        policy_version_id=request.policy_version_id,
        made_from=request,
        granted_by=granter,
        created_at=now,
        expires_at=expires_at,
        max_uses=terms.max_uses,
    )
    version = request.policy_version
    record_event(
        event_type=EventType.GRANT_CREATED,
        actor=granter,
        subject=grant,
        payload={
            "agent": request.agent.name,
            "action": key,
            "kind": grant.kind,
            "params_sha256": grant.params_sha256,
            "pins": _audited_pins(pins),
            "risk_level": grant.risk_level,
            "policy": version.name if version else None,
            "version": version.version if version else None,
            "expires_at": expires_at,
            "max_uses": grant.max_uses,
            "request_id": str(request.pk),
        },
    )
    return grant


def _audited_pins(pins: Mapping[str, Any]) -> dict[str, Any]:
    """Pins as the audit trail keeps them: a pinned value by its hash only (it may be a secret)."""
    return {
        key: {"prefix": pin["prefix"]}
        if "prefix" in pin
        else {"equals_sha256": hashlib.sha256(canonical_json(pin["equals"])).hexdigest()}
        for key, pin in pins.items()
    }


def may_revoke(user: User, grant: Grant) -> bool:
    """Managers and admins revoke any grant; an approver the grants they made."""
    return sees_all(user) or grant.granted_by_id == user.pk


def revoke_grant(*, grant: Grant, revoked_by: User, reason: str = "") -> bool:
    """Revoke a grant: the very next check no longer finds it (the check reads grants from the
    database, never from a cache). False when it was revoked already. Audited `grant.revoked`."""
    if not may_revoke(revoked_by, grant):
        raise RevokeNotAllowed("Only managers, admins and the person who granted it may revoke it.")
    reason = reason.strip()[:500]
    with transaction.atomic():
        revoked = Grant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=revoked_by, revoke_reason=reason
        )
        if not revoked:
            return False
        grant.refresh_from_db()
        record_event(
            event_type=EventType.GRANT_REVOKED,
            actor=revoked_by,
            subject=grant,
            payload={
                "agent": grant.agent.name,
                "action": grant.action,
                "reason": reason,
                "uses": grant.uses,
            },
        )
    return True
