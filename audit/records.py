"""The decision record of one approval request (SPEC §7, GDPR right to explanation): everything
that led to its outcome, each line with the sequence number of the audit event that recorded it.

What the request says now comes from its row; when it was said, and by whom, from the audit
trail: the events whose subject is the request (created, votes, edits, escalations, the end),
its outcome reports (the execution receipt, a mismatch) and its callbacks. A line whose event
is missing from the trail is shown without a number, which is itself worth a look: every change
of a request is audited in its own transaction. The page, the PDF (`audit.pdf`) and the tests
read the same `DecisionRecord`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone

from approvals.models import ApprovalRequest, Status, Vote
from audit.events import EventType
from audit.models import AuditEvent
from audit.services import Actor, record_event
from controls.models import Outcome, Receipt

SUBJECT = "approval_request"


@dataclass(frozen=True)
class Line:
    """One statement of the record, with the audit event that recorded it (None: no event)."""

    sequence: int | None
    label: str
    text: str
    # When it was recorded: its event's time (`build` sets it), or for a line without an event
    # the time its row gives, if any.
    at: dt.datetime | None = None
    detail: str = ""
    # "text", "hash" (a monospaced digest), "json" (a preformatted block) or "note" (a
    # statement of what has not happened: no event to cite)
    kind: str = "text"

    @property
    def missing_event(self) -> bool:
        return self.sequence is None and self.kind != "note"


@dataclass(frozen=True)
class Section:
    title: str
    lines: list[Line]
    empty: str = ""  # what to say when there are no lines


@dataclass(frozen=True)
class DecisionRecord:
    request: ApprovalRequest
    generated_at: dt.datetime
    sections: list[Section]
    trail: list[AuditEvent]  # every event the record rests on, in sequence order
    # Lines whose audit event could not be found: the record says so at the top.
    unaudited: list[Line] = field(default_factory=list)

    @property
    def status_label(self) -> str:
        return Status(self.request.status).label


def load(request_id: uuid.UUID) -> ApprovalRequest:
    """The request, with what its record reads, or 404."""
    return get_object_or_404(
        ApprovalRequest.objects.select_related(
            "agent", "agent__owner", "decided_by", "policy_version", "receipt"
        ),
        pk=request_id,
    )


def build(request: ApprovalRequest, *, now: dt.datetime | None = None) -> DecisionRecord:
    outcomes = list(
        Outcome.objects.filter(Q(approval_request=request) | Q(named_request_id=request.pk))
        .order_by("created_at")
        .only("pk", "receipt", "success", "error", "params_sha256", "created_at", "action")
    )
    callback_ids = [str(pk) for pk in request.callbacks.values_list("pk", flat=True)]
    trail = list(
        AuditEvent.objects.filter(
            Q(subject_type=SUBJECT, subject_id=str(request.pk))
            | Q(subject_type="outcome", subject_id__in=[str(o.pk) for o in outcomes])
            | Q(subject_type="callback_delivery", subject_id__in=callback_ids)
        )
        # Generating this record is audited against the request too; not part of its story.
        .exclude(event_type=EventType.REPORT_GENERATED)
        .order_by("sequence")
    )
    access = _data_access(request, trail)
    if access is not None:
        trail = sorted([*trail, access], key=lambda event: event.sequence)
    events = _Events(trail)
    votes = list(request.votes.order_by("created_at", "pk"))
    sections = [
        _asked(request, events),
        _routed(request, events),
        _timers(request, events),
        _votes(votes, events),
        _changes(request, events),
        _outcome(request, events, outcomes, access),
    ]
    recorded = {event.sequence: event.occurred_at for event in trail}
    sections = [
        replace(
            section,
            lines=[
                replace(line, at=recorded.get(line.sequence or 0, line.at))
                for line in section.lines
            ],
        )
        for section in sections
    ]
    unaudited = [line for s in sections for line in s.lines if line.missing_event]
    return DecisionRecord(
        request=request,
        generated_at=now or timezone.now(),
        sections=sections,
        trail=trail,
        unaudited=unaudited,
    )


def record_generated(*, request: ApprovalRequest, fmt: str, actor: Actor | None) -> AuditEvent:
    """Audit that someone produced the decision record of `request` (who read whose decision
    is itself worth keeping)."""
    with transaction.atomic():
        return record_event(
            event_type=EventType.REPORT_GENERATED,
            actor=actor,
            subject=request,
            payload={"report": "decision_record", "request_id": str(request.pk), "format": fmt},
        )


class _Events:
    """The record's events by type, for the lines to cite."""

    def __init__(self, trail: list[AuditEvent]) -> None:
        self.trail = trail

    def all(self, event_type: str) -> list[AuditEvent]:
        return [event for event in self.trail if event.event_type == event_type]

    def first(self, event_type: str) -> AuditEvent | None:
        found = self.all(event_type)
        return found[0] if found else None

    def last(self, event_type: str) -> AuditEvent | None:
        found = self.all(event_type)
        return found[-1] if found else None


def _seq(event: AuditEvent | None) -> int | None:
    return event.sequence if event is not None else None


def _when(event: AuditEvent | None) -> dt.datetime | None:
    return event.occurred_at if event is not None else None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _asked(request: ApprovalRequest, events: _Events) -> Section:
    created = events.first(EventType.REQUEST_CREATED)
    seq, at = _seq(created), _when(created)
    agent = request.agent
    about = [f"team {agent.team}"] if agent.team else []
    if agent.owner is not None:
        about.append(f"owner {agent.owner.display_name}")
    confidence = (
        f"{request.confidence:.0%}" if request.confidence is not None else "not given by the agent"
    )
    cost = (
        f"${request.estimated_cost_cents / 100:,.2f}"
        if request.estimated_cost_cents is not None
        else "not given"
    )
    return Section(
        "What the agent asked",
        [
            Line(seq, "Agent", agent.name, at, ", ".join(about)),
            Line(seq, "Action", request.action),
            Line(seq, "Parameters", _pretty(request.params), kind="json"),
            Line(
                seq,
                "Argument hash",
                request.params_sha256,
                detail="SHA-256 of the action and the agent's parameters (canonical JSON)",
                kind="hash",
            ),
            Line(seq, "Justification", request.justification),
            Line(seq, "Confidence", confidence),
            Line(seq, "Estimated cost", cost),
            Line(seq, "Urgency", request.get_urgency_display()),
        ],
    )


def _routed(request: ApprovalRequest, events: _Events) -> Section:
    created = events.first(EventType.REQUEST_CREATED)
    # An edit that raised the risk re-routed the request: the policy, reasons and route shown
    # (the request's own, as they stand) were set by the last such edit.
    rerouting = [e for e in events.all(EventType.REQUEST_EDITED) if e.payload.get("rerouted")]
    source = rerouting[-1] if rerouting else created
    seq = _seq(source)
    version = request.policy_version
    policy = (
        f"{version.name} version {version.version} ({version.scope_label})"
        if version is not None
        else "No policy covers this action"
    )
    risk = request.get_risk_level_display()
    claimed = (
        f"the agent claimed {request.claimed_risk_level}"
        if request.claimed_risk_level != request.risk_level
        else "as the agent claimed"
    )
    lines = [
        Line(seq, "Effective risk", risk, detail=f"set by {request.risk_source}; {claimed}"),
        Line(seq, "Policy", policy),
    ]
    for reason in request.check_reasons or []:
        code = reason.get("code", "") if isinstance(reason, dict) else str(reason)
        message = reason.get("message", "") if isinstance(reason, dict) else ""
        lines.append(Line(seq, f"Reason: {code}", message or code))
    lines.append(
        Line(
            seq,
            "Route",
            " → ".join(_tier(t) for t in request.route),
            detail=f"{request.required_approvals} approval(s) needed",
        )
    )
    if rerouting and created is not None:
        first = created.payload
        lines.append(
            Line(
                created.sequence,
                "At creation",
                f"{first.get('risk_level', '?')} risk, policy {first.get('policy') or 'none'}"
                + (f" version {first['policy_version']}" if first.get("policy_version") else ""),
                created.occurred_at,
                "reasons: " + (", ".join(first.get("reasons") or []) or "none"),
            )
        )
    return Section("Why a person decides, and who", lines)


def _tier(tier: str) -> str:
    return tier.replace("_", " ")


def _timers(request: ApprovalRequest, events: _Events) -> Section:
    created = events.first(EventType.REQUEST_CREATED)
    seq = _seq(created)
    lines = [
        Line(seq, "Created", _utc(request.created_at), _when(created)),
        Line(
            seq,
            "Escalation due",
            _utc(request.escalates_at),
            detail="to the next tier of the route if nobody decides by then",
        ),
        Line(seq, "Expiry", _utc(request.expires_at), detail="the request's time limit"),
    ]
    for event in events.all(EventType.REQUEST_ESCALATED):
        payload = event.payload
        lines.append(
            Line(
                event.sequence,
                "Escalated",
                f"{_tier(str(payload.get('from_tier', '?')))} → "
                f"{_tier(str(payload.get('to_tier', '?')))}",
                event.occurred_at,
                "top of the route reached: flagged" if payload.get("flagged") else "",
            )
        )
    expired = events.last(EventType.REQUEST_EXPIRED)
    if expired is not None:
        lines.append(
            Line(expired.sequence, "Expired", "nobody decided in time", expired.occurred_at)
        )
    return Section("Timers", lines)


def _votes(votes: list[Vote], events: _Events) -> Section:
    """One line per vote event, matched to its vote (for whether a later change voided it);
    a vote without an event gets a line without a number."""
    unmatched = list(votes)
    lines = []
    for event in events.all(EventType.REQUEST_VOTED):
        payload = event.payload
        vote = next(
            (
                v
                for v in unmatched
                if str(v.voter_id) == event.actor_id
                and v.vote == payload.get("vote")
                and v.params_sha256 == payload.get("params_sha256")
            ),
            None,
        )
        if vote is not None:
            unmatched.remove(vote)
        lines.append(_vote_line(event.sequence, event.occurred_at, event.actor_name, payload, vote))
    for vote in unmatched:
        lines.append(
            _vote_line(
                None,
                vote.created_at,
                vote.voter_name,
                {"vote": vote.vote, "comment": vote.comment, "params_sha256": vote.params_sha256},
                vote,
            )
        )
    for event in events.all(EventType.REQUEST_SELF_APPROVED):
        lines.append(
            Line(
                event.sequence,
                "Self-approval",
                f"{event.actor_name} voted on a request of an agent they own",
                event.occurred_at,
                "allowed for this agent by an admin",
            )
        )
    lines.sort(key=lambda line: (line.sequence is None, line.sequence or 0))
    return Section("Votes and comments", lines, empty="Nobody voted.")


def _vote_line(
    sequence: int | None,
    at: dt.datetime | None,
    voter: str,
    payload: dict[str, Any],
    vote: Vote | None,
) -> Line:
    choice = "Approve" if payload.get("vote") == "approve" else "Reject"
    notes = []
    if payload.get("tier"):
        notes.append(_tier(str(payload["tier"])))
    if payload.get("on_behalf_of"):
        notes.append(f"on behalf of {payload['on_behalf_of']} (away)")
    if payload.get("changed_params"):
        notes.append("with changed arguments")
    if vote is not None and vote.voided_at is not None:
        notes.append("voided by a later change of the arguments")
    notes.append(f"for arguments {str(payload.get('params_sha256', ''))[:16]}…")
    comment = str(payload.get("comment") or "")
    return Line(
        sequence,
        f"{choice} — {voter}",
        f"“{comment}”" if comment else "(no comment)",
        at,
        "; ".join(notes),
    )


def _changes(request: ApprovalRequest, events: _Events) -> Section:
    lines = []
    changes = [
        e
        for e in events.trail
        if e.event_type == EventType.REQUEST_EDITED
        or (e.event_type == EventType.REQUEST_VOTED and e.payload.get("changed_params"))
    ]
    for event in changes:
        payload = event.payload
        rerouted = payload.get("rerouted") or {}
        detail = "new argument hash " + str(payload.get("params_sha256", ""))
        if rerouted:
            before = rerouted.get("before", {})
            after = rerouted.get("after", {})
            detail += (
                f"; risk raised {before.get('risk_level')} → {after.get('risk_level')}, "
                f"now routed to {' → '.join(_tier(t) for t in after.get('route', []))}"
            )
        what = (
            "Arguments changed (not counted as an approval)"
            if event.event_type == EventType.REQUEST_EDITED
            else "Approved with changed arguments"
        )
        comment = str(payload.get("comment") or "")
        lines.append(
            Line(
                event.sequence,
                f"{what} — {event.actor_name}",
                f"“{comment}”" if comment else "(no comment)",
                event.occurred_at,
                detail,
            )
        )
    if request.modified_params is not None:
        lines.append(
            Line(
                _seq(changes[-1] if changes else None),
                "Arguments the agent must use",
                _pretty(request.modified_params),
                kind="json",
            )
        )
        lines.append(
            Line(
                _seq(changes[-1] if changes else None),
                "Their hash",
                request.current_params_sha256,
                kind="hash",
            )
        )
    return Section("Changes of the arguments", lines, empty="The arguments were not changed.")


_END_EVENTS = (EventType.REQUEST_DECIDED, EventType.REQUEST_EXPIRED, EventType.REQUEST_CANCELLED)


def _outcome(
    request: ApprovalRequest,
    events: _Events,
    outcomes: list[Outcome],
    access: AuditEvent | None,
) -> Section:
    end = next((e for e in reversed(events.trail) if e.event_type in _END_EVENTS), None)
    lines = []
    if request.status == Status.PENDING:
        lines.append(Line(None, "Status", "Pending: not decided yet", kind="note"))
    else:
        who = request.decided_by.display_name if request.decided_by else ""
        if not who and end is not None and end.actor_type == "agent":
            who = f"the agent {end.actor_name}"
        lines.append(
            Line(
                _seq(end),
                "Outcome",
                Status(request.status).label,
                request.decided_at,
                f"by {who}" if who else "by the system",
            )
        )
        if request.decision_reason:
            lines.append(Line(_seq(end), "Reason given", request.decision_reason))
        if request.approved_params_sha256:
            lines.append(
                Line(
                    _seq(end),
                    "Approved argument hash",
                    request.approved_params_sha256,
                    detail="the agent must execute exactly these arguments",
                    kind="hash",
                )
            )
    if access is not None:
        lines.append(
            Line(
                access.sequence,
                "Sensitive data accessed",
                f"policy {access.payload.get('policy')} version {access.payload.get('version')}",
                access.occurred_at,
            )
        )
    for outcome in outcomes:
        reported = next(
            (e for e in events.all(EventType.OUTCOME_REPORTED) if e.subject_id == str(outcome.pk)),
            None,
        )
        result = "succeeded" if outcome.success else "failed"
        receipt = Receipt(outcome.receipt).label
        lines.append(
            Line(
                _seq(reported),
                "Execution reported",
                f"{receipt}; the action {result}",
                outcome.created_at,
                (f"error: {outcome.error[:300]}; " if outcome.error else "")
                + f"executed arguments {outcome.params_sha256}",
            )
        )
        for mismatch in events.all(EventType.EXECUTION_MISMATCH):
            if mismatch.subject_id == str(outcome.pk):
                lines.append(
                    Line(
                        mismatch.sequence,
                        "Execution mismatch",
                        "the agent was disabled and the managers alerted",
                        mismatch.occurred_at,
                    )
                )
    if request.status == Status.APPROVED and not outcomes:
        lines.append(
            Line(
                None,
                "Execution",
                "No receipt yet: the agent has not reported executing it.",
                kind="note",
            )
        )
    for event in events.all(EventType.CALLBACK_RETRIED):
        lines.append(
            Line(
                event.sequence,
                "Callback retried",
                f"by {event.actor_label}",
                event.occurred_at,
                f"after {event.payload.get('failed_attempts')} failed attempts",
            )
        )
    return Section("Outcome", lines)


def _data_access(request: ApprovalRequest, trail: list[AuditEvent]) -> AuditEvent | None:
    """A sensitive policy's approval records the access right after the decision, in its
    transaction (`approvals.services`), about the agent: the next event, when it matches."""
    decided = next((e for e in trail if e.event_type == EventType.REQUEST_DECIDED), None)
    if decided is None or request.status != Status.APPROVED:
        return None
    following = AuditEvent.objects.filter(sequence=decided.sequence + 1).first()
    if (
        following is not None
        and following.event_type == EventType.DATA_ACCESSED
        and following.subject_id == str(request.agent_id)
        and following.payload.get("params_sha256") == request.approved_params_sha256
    ):
        return following
    return None


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
