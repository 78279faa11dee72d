"""What the services tell the apps above them about a request's change, inside its transaction.

`request_changed` is sent by `approvals.services` at each change a person elsewhere may want to
hear of: a new request, an escalation, a final state. It is sent inside the change's
transaction, before its first audit append (see `approvals.services`), so a receiver may write
its outbox rows there: a rolled-back change then leaves none. Receivers write rows only; they
send nothing over the network and change no rule (SPEC §9.10). The apps that listen (Slack)
sit above approvals, so approvals never imports them.
"""

from __future__ import annotations

from django.dispatch import Signal

from approvals.models import ApprovalRequest, Status

# What changed (`kind`).
CREATED = "created"
ESCALATED = "escalated"
REROUTED = "rerouted"  # an approver's edit raised the risk: a new route and tier
VOTED = "voted"  # a vote that did not decide (a critical request's first approval)
DECIDED = "decided"  # approved or rejected
EXPIRED = "expired"
CANCELLED = "cancelled"
AGENT_STATUS = "agent_status"  # its agent was paused or resumed: no vote while it is stopped

# Sent with `request` (the locked, changed ApprovalRequest) and `kind`.
request_changed = Signal()


def send_changed(request: ApprovalRequest, kind: str) -> None:
    """Tell the receivers; a receiver's failure fails the change (its rows belong to it)."""
    request_changed.send(sender=ApprovalRequest, request=request, kind=kind)


def closed_kind(status: str) -> str:
    """The kind of change a final state is."""
    return {Status.EXPIRED: EXPIRED, Status.CANCELLED: CANCELLED}.get(Status(status), DECIDED)
