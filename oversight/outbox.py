"""The transactional outbox of every outgoing notification: callbacks, emails (SPEC §8).

A row (`OutboxItem`) is written in the transaction of the change it tells about, so a rolled-back
change sends nothing. After commit a task sends it (callbacks), and beat's sweep sends whatever
is due and was not (emails, and callbacks whose task was lost: broker down at commit time,
worker killed mid-send), so a committed one is delivered even across restarts. Before sending,
a worker takes a short lease on the row, so two workers never send one row at the same time;
failures back off and give up after `MAX_ATTEMPTS`. Delivery is at-least-once: a worker killed
after sending and before recording sends again.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from django.core.mail import EmailMessage, mailers
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger(__name__)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (no longer relevant)"


class OutboxItem(models.Model):
    """A row of the outbox: what to send, and how far its delivery got."""

    MAX_ATTEMPTS = 8

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker holds the lease while it sends, so two workers never send at the same time.
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class EmailOutboxItem(OutboxItem):
    """An email of the outbox; `compose` (see `deliver_email`) makes the messages at send time."""

    sent_to = models.JSONField(default=list, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        abstract = True


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


# Rows per sweep: a sweep is one task on a worker's pool, and timers wait behind it (a burst of
# emails must not make an escalation late), so it stays short; the next tick takes the rest.
SWEEP_BATCH = 100


def sweep(model: type[OutboxItem], deliver: Callable[[uuid.UUID], str]) -> int:
    """Deliver what is due (beat): rows never queued as tasks, lost tasks, and retries."""
    rows = due(model, limit=SWEEP_BATCH)
    outcomes: Counter[str] = Counter()
    for item_id in rows:
        try:
            outcomes[deliver(item_id)] += 1
        except Exception:  # one bad row must not stop the others' delivery
            logger.exception("%s %s failed", model._meta.verbose_name, item_id)
            outcomes["errors"] += 1
    if rows:
        logger.info(
            "outbox sweep, %s: %s",
            model._meta.verbose_name_plural,
            ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())),
        )
    return len(rows)


def deliver_email[Item: EmailOutboxItem](
    model: type[Item], item_id: uuid.UUID, compose: Callable[[Item], list[EmailMessage] | None]
) -> str:
    """Send one due email row: `compose` makes its messages (one per person), or None when it
    is no longer worth sending (then the row is marked skipped). Returns the row's status
    afterwards ('skipped' also when it was not due or another worker holds it)."""
    if not take_lease(model, item_id):
        return "skipped"
    item = model._default_manager.get(pk=item_id)
    messages = compose(item)
    error = ""
    try:  # network I/O outside any transaction
        if messages:
            mailers.default.send_messages(messages)
    except Exception as exc:  # an unreachable mail server: record it and back off
        error = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        final = DeliveryStatus.SKIPPED if messages is None else ""
        settled = settle(model, item_id, error=error, status=final)
        settled.sent_to = [] if error else sorted({a for m in messages or [] for a in m.to})
        settled.last_error = error
        settled.save(update_fields=["sent_to", "last_error"])
    return settled.status
