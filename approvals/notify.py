"""What happens after a request's change commits: wake long-polling agents, deliver callbacks.

Called only through `on_commit`, so a rolled-back change notifies nobody. Every step here is
best-effort and must never fail the change that triggered it: a lost wake-up is caught by the
waiters' own re-reads, a lost callback task by the outbox sweep.
"""

from __future__ import annotations

import logging

from django.db import transaction

from approvals.models import ApprovalRequest

logger = logging.getLogger(__name__)

CREATED = "created"
VOTED = "voted"
ESCALATED = "escalated"
FINISHED = "finished"


def on_commit(request: ApprovalRequest, kind: str) -> None:
    request_id = str(request.pk)
    has_callback = bool(request.callback_url)
    rank = request.first_tier_rank
    transaction.on_commit(
        lambda: dispatch(request_id, kind, has_callback=has_callback, first_tier_rank=rank),
        robust=True,
    )


def dispatch(request_id: str, kind: str, *, has_callback: bool, first_tier_rank: int) -> None:
    from approvals import live, waiters

    waiters.publish(request_id, kind)
    live.announce_request(request_id, first_tier_rank)
    if kind == FINISHED and has_callback:
        from approvals.tasks import deliver_callbacks

        try:
            deliver_callbacks.delay(request_id)
        except Exception:  # broker down: the outbox sweep delivers it later
            logger.warning("could not queue callback delivery for %s; the sweep will", request_id)
