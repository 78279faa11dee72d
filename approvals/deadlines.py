"""When a request's deadlines fall, and which of them are handed to the timer tasks now: plain
functions of the row and the clock (why deadlines are handed over late, and how they run: see
`approvals.timers`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from approvals.models import ApprovalRequest

ESCALATE = "escalate"
EXPIRE = "expire"


@dataclass(frozen=True)
class Timer:
    kind: str
    request_id: str
    token: str
    at: datetime


def horizon_end(now: datetime) -> datetime:
    """Deadlines up to this instant are handed to the broker now."""
    return now + timedelta(seconds=settings.OVERSIGHT_TIMER_HORIZON_SECONDS)


def due_between(request: ApprovalRequest, after: datetime, until: datetime) -> list[Timer]:
    """The request's deadlines in (after, until]."""
    timers = []
    if request.escalated_at is None and after < request.escalates_at <= until:
        timers.append(
            Timer(ESCALATE, str(request.pk), str(request.timer_token), request.escalates_at)
        )
    if after < request.expires_at <= until:
        timers.append(Timer(EXPIRE, str(request.pk), str(request.timer_token), request.expires_at))
    return timers


def handed_over_at_creation(request: ApprovalRequest) -> list[Timer]:
    """The deadlines a new request's creation hands over on commit (those within the horizon)."""
    return due_between(request, request.created_at, request.timers_queued_until)
