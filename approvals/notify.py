"""What happens after a request's change commits: wake long-polling agents, update open pages,
hand near deadlines to the timer tasks, deliver callbacks. (Emails are sent by beat's outbox
sweep, see `approvals.emails`.)

Called only through `on_commit`, so a rolled-back change notifies nobody. Every step here is
best-effort and must never fail the change that triggered it: a lost wake-up is caught by the
waiters' own re-reads, a lost live update by the pages' periodic refresh, a lost timer task by
the timer tick, a lost callback task by the outbox sweep (both on beat).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction

from approvals.models import ApprovalRequest
from oversight import redis_clients

if TYPE_CHECKING:
    from approvals.timers import Timer

logger = logging.getLogger(__name__)

CREATED = "created"
VOTED = "voted"
ESCALATED = "escalated"
FINISHED = "finished"
AGENT_STATUS = "agent_status"  # its agent was paused or resumed: the inbox row redraws


def on_commit(request: ApprovalRequest, kind: str) -> None:
    from approvals import timers

    request_id = str(request.pk)
    rank = request.first_tier_rank
    due = timers.handed_over_at_creation(request) if kind == CREATED else []
    callbacks = kind == FINISHED and bool(request.callback_url)
    transaction.on_commit(
        lambda: dispatch(
            request_id,
            kind,
            first_tier_rank=rank,
            due_timers=due,
            callbacks=callbacks,
        ),
        robust=True,
    )


def dispatch(
    request_id: str,
    kind: str,
    *,
    first_tier_rank: int,
    due_timers: Sequence[Timer] = (),
    callbacks: bool = False,
) -> None:
    from approvals import live, tasks, timers, waiters

    if kind != CREATED:  # a long-poll waits for its request to leave pending; a new one has not
        waiters.publish(request_id, kind)
    live.announce_request(request_id, first_tier_rank)
    if not due_timers and not callbacks:
        return
    # The broker is this Redis: when it did not answer a moment ago, do not make the request
    # that caused this wait on it (up to the broker's socket timeout, per retry).
    if not redis_clients.answers():
        logger.warning(
            "Redis does not answer: the tasks of %s %s are left to beat", kind, request_id
        )
        return
    try:
        # The first failure skips the rest: with the broker down, each attempt costs time.
        timers.queue(due_timers)
        if callbacks:
            tasks.deliver_callbacks.delay(request_id)
    except Exception:  # broker down: the timer tick and the outbox sweeps catch up
        redis_clients.breaker.failed()
        logger.warning("could not queue the tasks of %s %s; beat will catch up", kind, request_id)
