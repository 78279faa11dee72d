"""Escalation at half-time and expiry on time (SPEC §2 Timing), and why it is built this way.

Two paths lead to the same two services, `escalate_request` and `expire_request`. They lock the
row and change nothing when it is not (or no longer) due, so running either twice, or both paths
at once, is harmless: the database settles it, one audit event each.

1. **ETA tasks, for punctuality.** A deadline is handed to Celery as a task due at that instant
   (`escalate_on_time` / `expire_on_time`), carrying the request's `timer_token`. A task whose
   token no longer matches (the request was decided, which rotates the token) does nothing.

Where each part lives: `approvals.deadlines` says when deadlines fall and which are handed over
now (plain functions); `approvals.effects.queue_timers` hands them to the broker; this module
is beat's side (`hand_over`, `sweep`), run by `approvals.tasks.tick_timers`.

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
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from approvals import effects, services
from approvals.deadlines import due_between, horizon_end
from approvals.models import ApprovalRequest, Status

logger = logging.getLogger(__name__)

BATCH = 500


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
        transaction.on_commit(lambda: effects.queue_timers(timers))
    return len(timers)


def sweep(now: datetime | None = None) -> tuple[int, int]:
    """Escalate and expire whatever is overdue; returns how many of each changed."""
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
