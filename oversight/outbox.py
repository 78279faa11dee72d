"""The transactional outbox of every outgoing notification: callbacks, emails (SPEC §8).

A row (`OutboxItem`) is written in the transaction of the change it tells about, so a rolled-back
change sends nothing. After commit a task sends it (callbacks), and beat's sweep sends whatever
is due and was not (emails, and callbacks whose task was lost: broker down at commit time,
worker killed mid-send), so a committed one is delivered even across restarts.

Each attempt: a worker takes a short lease on the row, so two workers never send one row at the
same time, and **the attempt is counted as the lease is taken**, before anything is sent, with
the time of the next attempt; so a worker killed mid-send (SIGKILL, the OOM killer, a hard time
limit) cannot make a row retry forever. Failures back off (`backoff`: doubling from 10 s, then
hourly, for about 24 h) and after `MAX_ATTEMPTS` the row is failed for good, a dead letter: the
callback outbox alerts people about it (`approvals.callbacks`). Delivery is at-least-once: a
worker killed after sending and before recording sends again.

A sweep is bounded in time whatever the peers do: it starts deliveries for `SWEEP_SECONDS`, and
each delivery has a deadline of its own (`oversight.outbound`), so the next tick takes the rest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
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

    MAX_ATTEMPTS = 33  # about 24 h of retries (see `backoff`)

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


# Called when a row fails for good (a dead letter), in the transaction that marks it so.
type GiveUp[Item: OutboxItem] = Callable[[Item], None]

# How long one attempt holds its row: longer than any attempt lasts (an outbound call's deadline
# is at most 30 s, an email's send is bounded by its task's time limit).
LEASE = timedelta(seconds=60)


def backoff(attempts: int) -> timedelta:
    """10 s, 20 s, 40 s … doubling, then every hour: with `MAX_ATTEMPTS` (33), the last attempt
    is about 24 h after the first."""
    return timedelta(seconds=min(10 * 2 ** max(attempts - 1, 0), 3600))


def take_lease[Item: OutboxItem](
    model: type[Item], item_id: uuid.UUID, *, on_give_up: GiveUp[Item] | None = None
) -> Item | None:
    """Claim a due row for one attempt and record the attempt before it is made; None if the
    row is not due, another worker holds it, or it has had its attempts (then it is failed for
    good, `on_give_up` called in the same transaction).

    Counted beforehand, an attempt whose worker dies mid-send (SIGKILL, OOM, a hard time limit)
    still counts: the row comes due again at its backoff, as after a failure, and is failed for
    good after `MAX_ATTEMPTS` instead of being retried forever."""
    now = timezone.now()
    with transaction.atomic():
        item = (
            model._default_manager.select_for_update(skip_locked=True)
            .filter(pk=item_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .first()
        )
        if item is None:
            return None
        if item.attempts >= model.MAX_ATTEMPTS:  # the last attempt never reported back
            _give_up(item, "its last attempt never finished (its worker stopped)", on_give_up)
            item.save(update_fields=["status", "lease_until"])
            return None
        item.attempts += 1
        item.lease_until = now + LEASE
        # When it is tried again if this attempt never reports back; after the last attempt,
        # when the lease ends: then it is given up.
        last = item.attempts >= model.MAX_ATTEMPTS
        item.next_attempt_at = now + (LEASE if last else backoff(item.attempts))
        item.save(update_fields=["attempts", "lease_until", "next_attempt_at"])
    return item


def settle[Item: OutboxItem](
    model: type[Item],
    item_id: uuid.UUID,
    *,
    error: str,
    status: str = "",
    on_give_up: GiveUp[Item] | None = None,
) -> Item:
    """Record how the attempt `take_lease` counted went, on the locked row (call inside a
    transaction): delivered (no error), retried later with backoff, or failed for good after
    `MAX_ATTEMPTS` (`on_give_up` called); or the given final `status`."""
    item = model._default_manager.select_for_update().get(pk=item_id)
    if item.status != DeliveryStatus.PENDING:  # settled meanwhile (an attempt past its lease)
        return item
    item.lease_until = None
    now = timezone.now()
    if status:
        item.status = status
    elif not error:
        item.status = DeliveryStatus.DELIVERED
        item.delivered_at = now
    elif item.attempts >= model.MAX_ATTEMPTS:
        _give_up(item, error, on_give_up)
    else:
        item.next_attempt_at = now + backoff(item.attempts)
    item.save(update_fields=["lease_until", "status", "delivered_at", "next_attempt_at"])
    return item


def _give_up[Item: OutboxItem](item: Item, error: str, on_give_up: GiveUp[Item] | None) -> None:
    item.status = DeliveryStatus.FAILED
    item.lease_until = None
    logger.warning(
        "%s %s failed for good after %s attempts: %s",
        item._meta.verbose_name,
        item.pk,
        item.attempts,
        error,
    )
    if on_give_up is not None:
        on_give_up(item)


def due(model: type[OutboxItem], limit: int = 500) -> list[uuid.UUID]:
    now = timezone.now()
    return list(
        model._default_manager.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


# Rows per sweep, and how long a sweep starts deliveries: a sweep is one task, and it must end
# well within its time limit whatever the peers do. It starts no delivery after SWEEP_SECONDS,
# so it lasts at most that plus one delivery (an outbound call's deadline, an email's send);
# the next tick takes the rest.
SWEEP_BATCH = 100
SWEEP_SECONDS = 3.0


def sweep(model: type[OutboxItem], deliver: Callable[[uuid.UUID], str]) -> int:
    """Deliver what is due (beat): rows never queued as tasks, lost tasks, and retries. Returns
    how many rows it tried."""
    started = time.monotonic()
    rows = due(model, limit=SWEEP_BATCH)
    outcomes: Counter[str] = Counter()
    for item_id in rows:
        if time.monotonic() - started > SWEEP_SECONDS:
            outcomes["left for the next sweep"] = len(rows) - outcomes.total()
            break
        try:
            outcomes[deliver(item_id)] += 1
        except SoftTimeLimitExceeded:
            raise  # the task's time is up: the row's attempt is counted, its lease will expire
        except Exception:  # one bad row must not stop the others' delivery
            logger.exception("%s %s failed", model._meta.verbose_name, item_id)
            outcomes["errors"] += 1
    if rows:
        logger.info(
            "outbox sweep, %s: %s",
            model._meta.verbose_name_plural,
            ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())),
        )
    return outcomes.total() - outcomes["left for the next sweep"]


def deliver_email[Item: EmailOutboxItem](
    model: type[Item], item_id: uuid.UUID, compose: Callable[[Item], list[EmailMessage] | None]
) -> str:
    """Send one due email row: `compose` makes its messages (one per person), or None when it
    is no longer worth sending (then the row is marked skipped). Returns the row's status
    afterwards ('skipped' also when it was not due or another worker holds it)."""
    item = take_lease(model, item_id)
    if item is None:
        return "skipped"
    messages = compose(item)
    error = ""
    interrupted: SoftTimeLimitExceeded | None = None
    try:  # network I/O outside any transaction
        if messages:
            mailers.default.send_messages(messages)
    except SoftTimeLimitExceeded as exc:  # a stalled mail server, stopped by the task's limit
        error, interrupted = "stopped at the task's time limit", exc
    except Exception as exc:  # an unreachable mail server: record it and back off
        error = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        final = DeliveryStatus.SKIPPED if messages is None else ""
        settled = settle(model, item_id, error=error, status=final)
        settled.sent_to = [] if error else sorted({a for m in messages or [] for a in m.to})
        settled.last_error = error
        settled.save(update_fields=["sent_to", "last_error"])
    if interrupted is not None:
        raise interrupted
    return settled.status
