"""Escalation at half-time and expiry on time (SPEC §2 Timing), and why it is built this way.

Two paths lead to the same two services, `escalate_request` and `expire_request`. They lock the
row and change nothing when it is not (or no longer) due, so running either twice, or both paths
at once, is harmless: the database settles it, one audit event each.

1. **ETA tasks, for punctuality.** A deadline is handed to Celery as a task due at that instant
   (`escalate_on_time` / `expire_on_time`), carrying the request's `timer_token`. A task whose
   token no longer matches (the request was decided, which rotates the token) does nothing.

2. **The beat tick, the safety net** (every `OVERSIGHT_TIMER_TICK_SECONDS`): it escalates and
   expires whatever is overdue (a worker that was down, a message lost with Redis) through
   indexed queries on pending rows, and hands over the deadlines coming near (below).

Why deadlines are not all handed to Redis at creation: with the Redis transport a worker takes
an ETA message at once and holds it unacknowledged until its time; a message unacknowledged for
longer than the transport's visibility timeout (`CELERY_BROKER_TRANSPORT_OPTIONS`, one hour) is
delivered again to another worker. A 4 h or 24 h timer would run several times, and raising the
timeout to a day would leave the message of a crashed worker waiting a day to come back. So a
deadline is handed over only once it is within `OVERSIGHT_TIMER_HORIZON_SECONDS` (60 s, far
below the visibility timeout): on commit of the creation if it is that close already, otherwise
by the tick as it comes near. `timers_queued_until` on the row says up to when its deadlines
have been handed over; the tick advances it under a row lock (`SKIP LOCKED`), so two beats, or
two overlapping ticks, never hand one deadline over twice.

What can still go wrong, and why it does no harm: a message lost with Redis, or held by a worker
killed with SIGKILL, is caught by the tick as soon as its deadline has passed (late by at most
one tick). The killed worker's message comes back after the visibility timeout and finds the
request escalated or decided: a no-op.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from approvals.models import ApprovalRequest, Status

logger = logging.getLogger(__name__)

ESCALATE = "escalate"
EXPIRE = "expire"
BATCH = 500


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


def queue(timers: Sequence[Timer]) -> None:
    """Send the timer tasks (after commit). Best effort: the tick catches what is not sent."""
    from approvals.tasks import escalate_on_time, expire_on_time

    for timer in timers:
        task = escalate_on_time if timer.kind == ESCALATE else expire_on_time
        task.apply_async((timer.request_id, timer.token), eta=timer.at)


def hand_over(now: datetime | None = None) -> int:
    """Queue the deadlines that have come within the horizon since the last hand-over."""
    now = now or timezone.now()
    until = horizon_end(now)
    with transaction.atomic():
        rows = list(
            ApprovalRequest.objects.select_for_update(skip_locked=True)
            .filter(status=Status.PENDING, timers_queued_until__lt=until)
            .filter(
                Q(
                    escalated_at__isnull=True,
                    escalates_at__gt=F("timers_queued_until"),
                    escalates_at__lte=until,
                )
                | Q(expires_at__gt=F("timers_queued_until"), expires_at__lte=until)
            )
            .only(
                "timer_token", "escalates_at", "escalated_at", "expires_at", "timers_queued_until"
            )
            .order_by()[:BATCH]
        )
        if not rows:
            return 0
        ApprovalRequest.objects.filter(pk__in=[row.pk for row in rows]).update(
            timers_queued_until=until
        )
        # Deadlines already past are the sweep's; a task for them would only repeat its work.
        timers = [
            timer
            for row in rows
            for timer in due_between(row, max(row.timers_queued_until, now), until)
        ]
        transaction.on_commit(lambda: queue(timers))
    return len(timers)


def sweep(now: datetime | None = None) -> tuple[int, int]:
    """Escalate and expire whatever is overdue; returns how many of each changed."""
    from approvals import services  # services import this module for `horizon_end`

    now = now or timezone.now()
    pending = ApprovalRequest.objects.filter(status=Status.PENDING)
    # An overdue request's missed escalation is caught up by its expiry (see the services).
    escalations = list(
        pending.filter(escalated_at__isnull=True, escalates_at__lte=now, expires_at__gt=now)
        .order_by("escalates_at")
        .values_list("pk", flat=True)[:BATCH]
    )
    expiries = list(
        pending.filter(expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:BATCH]
    )
    return (
        _apply(services.escalate_request, escalations),
        _apply(services.expire_request, expiries),
    )


def _apply(service: Callable[..., bool], request_ids: list[uuid.UUID]) -> int:
    changed = 0
    for request_id in request_ids:
        try:
            changed += service(request_id=request_id)
        except Exception:  # one bad row must not keep the others waiting
            logger.exception("timer for request %s failed", request_id)
    return changed
