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

from approvals.models import RiskLevel
from approvals.services.create import create_request
from approvals.services.errors import (
    AgentFrozen,
    AgentStopped,
    AlreadyVoted,
    ApprovalError,
    ArgumentsChanged,
    BudgetRefused,
    EditRefused,
    GuardrailDenied,
    Invalid,
    NotAllowed,
    NotPending,
    RequestExpired,
)
from approvals.services.lifecycle import (
    agent_status_changed,
    cancel_request,
    escalate_request,
    expire_request,
    lock_pending,
)
from approvals.services.votes import VoteOutcome, approve_request, reject_request

__all__ = [
    "AgentFrozen",
    "AgentStopped",
    "AlreadyVoted",
    "ApprovalError",
    "ArgumentsChanged",
    "BudgetRefused",
    "EditRefused",
    "GuardrailDenied",
    "Invalid",
    "NotAllowed",
    "NotPending",
    "RequestExpired",
    "RiskLevel",
    "VoteOutcome",
    "agent_status_changed",
    "approve_request",
    "cancel_request",
    "create_request",
    "escalate_request",
    "expire_request",
    "lock_pending",
    "reject_request",
]
