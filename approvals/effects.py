"""What follows a request's change once it commits, named where a service schedules it (as
Zulip's `do_*` actions send their events):

    effects.after_commit(request, wake=effects.FINISHED, callbacks=True)

- `wake`: long-polling agents hear that the request changed (a new one wakes nobody: a
  long-poll waits for its request to leave pending);
- the request's row is redrawn in every open inbox and page (always);
- `timers`: deadlines handed to the timer tasks now (`approvals.deadlines`);
- `callbacks`: its callbacks are delivered now. (Emails are sent by beat's outbox sweep, see
  `approvals.emails`.)

Scheduled with `on_commit`, so a rolled-back change has no effect. Every step is best-effort
and never fails the change behind it: a lost wake-up is caught by the waiters' own re-reads, a
lost live update by the pages' periodic refresh, a lost timer task by the timer tick, a lost
callback task by the outbox sweep (both on beat).

Tasks are sent by their names (`TASKS`): the services import this module and the tasks import
the services, so this module does not import the tasks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.db import transaction

from approvals import live, waiters
from approvals.deadlines import ESCALATE, EXPIRE, Timer
from approvals.models import ApprovalRequest
from oversight import redis_clients
from oversight.celery import app as celery_app

logger = logging.getLogger(__name__)

# What a long-poll hears (`wake`).
VOTED = "voted"
ESCALATED = "escalated"
FINISHED = "finished"
AGENT_STATUS = "agent_status"  # its agent was paused or resumed: the inbox row redraws

# The tasks this module sends, by name (`approvals.tasks`; a test checks each is registered).
TASKS = {
    ESCALATE: "approvals.tasks.escalate_on_time",
    EXPIRE: "approvals.tasks.expire_on_time",
    "callbacks": "approvals.tasks.deliver_callbacks",
    "callback retry": "approvals.tasks.retry_delivery",
}


def after_commit(
    request: ApprovalRequest,
    *,
    wake: str | None,
    timers: Sequence[Timer] = (),
    callbacks: bool = False,
) -> None:
    request_id = str(request.pk)
    rank = request.first_tier_rank
    timers = list(timers)
    transaction.on_commit(
        lambda: _run(request_id, rank, wake=wake, timers=timers, callbacks=callbacks),
        robust=True,
    )


def _run(
    request_id: str, rank: int, *, wake: str | None, timers: Sequence[Timer], callbacks: bool
) -> None:
    if wake is not None:
        waiters.publish(request_id, wake)
    live.announce_request(request_id, rank)
    if not timers and not callbacks:
        return
    # The broker is this Redis: when it did not answer a moment ago, do not make the request
    # that caused this wait on it (up to the broker's socket timeout, per retry).
    if not redis_clients.answers():
        logger.warning(
            "Redis does not answer: the tasks of request %s are left to beat", request_id
        )
        return
    try:
        # The first failure skips the rest: with the broker down, each attempt costs time.
        queue_timers(timers)
        if callbacks:
            celery_app.send_task(TASKS["callbacks"], args=(request_id,))
    except Exception:  # broker down: the timer tick and the outbox sweeps catch up
        redis_clients.breaker.failed()
        logger.warning("could not queue the tasks of request %s; beat will catch up", request_id)


def queue_timers(timers: Sequence[Timer]) -> None:
    """Send the timer tasks, each due at its deadline (after commit). Best effort: the tick
    catches what is not sent."""
    for timer in timers:
        celery_app.send_task(TASKS[timer.kind], args=(timer.request_id, timer.token), eta=timer.at)


def queue_callback_retry(delivery_id: uuid.UUID) -> None:
    """Send one callback's next attempt now (an admin's retry). Raises when the broker does not
    take it; the row is due, and the outbox sweep delivers it then."""
    celery_app.send_task(TASKS["callback retry"], args=(str(delivery_id),))
