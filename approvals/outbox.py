"""The transactional outbox shared by callbacks and emails (SPEC §8).

A row (`OutboxItem`) is written in the transaction of the change it tells about, so a rolled-back
change sends nothing. After commit a task sends it; the beat sweep sends whatever is due and
was not (broker down at commit time, worker killed mid-send), so a committed one is delivered
even across restarts. Before sending, a worker takes a short lease on the row, so two workers
never send one row at the same time; failures back off and give up after `MAX_ATTEMPTS`.
Delivery is at-least-once: a worker killed after sending and before recording sends again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from approvals.models import DeliveryStatus, OutboxItem

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … capped at one hour."""
    return timedelta(seconds=min(10 * 2 ** max(attempts - 1, 0), 3600))


def take_lease(model: type[OutboxItem], item_id: uuid.UUID) -> bool:
    """Claim a due row for one attempt; False if it is not due or another worker holds it."""
    now = timezone.now()
    return bool(
        model._default_manager.filter(
            pk=item_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE)
    )


def settle[Item: OutboxItem](
    model: type[Item], item_id: uuid.UUID, *, error: str, status: str = ""
) -> Item:
    """Record one attempt on the locked row (call inside a transaction): delivered (no error),
    retried later with backoff, or failed for good; or the given final `status`."""
    item = model._default_manager.select_for_update().get(pk=item_id)
    item.attempts += 1
    item.lease_until = None
    now = timezone.now()
    if status:
        item.status = status
    elif not error:
        item.status = DeliveryStatus.DELIVERED
        item.delivered_at = now
    elif item.attempts >= model.MAX_ATTEMPTS:
        item.status = DeliveryStatus.FAILED
        logger.warning(
            "%s %s failed for good after %s attempts: %s",
            model._meta.verbose_name,
            item.pk,
            item.attempts,
            error,
        )
    else:
        item.next_attempt_at = now + backoff(item.attempts)
    item.save(
        update_fields=["attempts", "lease_until", "status", "delivered_at", "next_attempt_at"]
    )
    return item


def due(model: type[OutboxItem], limit: int = 500) -> list[uuid.UUID]:
    now = timezone.now()
    return list(
        model._default_manager.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
