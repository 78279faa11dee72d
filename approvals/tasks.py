"""Celery tasks of the approvals app: thin wrappers that re-read rows and call the services."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task

from approvals import callbacks, idempotency
from approvals.models import CallbackDelivery, DeliveryStatus

logger = logging.getLogger(__name__)


def _deliver_and_reschedule(delivery_id: uuid.UUID) -> None:
    if callbacks.deliver(delivery_id) != DeliveryStatus.PENDING:
        return
    next_at = (
        CallbackDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if next_at is not None:
        retry_delivery.apply_async(args=(str(delivery_id),), eta=next_at)


@shared_task(acks_late=True, ignore_result=True)
def deliver_callbacks(request_id: str) -> None:
    """Deliver the pending callbacks of one request, then retry failures with backoff."""
    pending = CallbackDelivery.objects.filter(
        request_id=uuid.UUID(request_id), status=DeliveryStatus.PENDING
    )
    for delivery_id in pending.values_list("pk", flat=True):
        _deliver_and_reschedule(delivery_id)


@shared_task(acks_late=True, ignore_result=True)
def retry_delivery(delivery_id: str) -> None:
    _deliver_and_reschedule(uuid.UUID(delivery_id))


@shared_task(ignore_result=True)
def sweep_callbacks() -> int:
    """Safety net (beat): deliver whatever is due, whether its task was lost or never queued
    (broker down at commit time, worker killed mid-attempt)."""
    due = callbacks.due_deliveries()
    for delivery_id in due:
        try:
            callbacks.deliver(delivery_id)
        except Exception:  # one bad row must not stop the others' delivery
            logger.exception("callback delivery %s failed", delivery_id)
    return len(due)


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    """Drop idempotency keys past their retention (kept at least 24 h, SPEC §3)."""
    return idempotency.purge_expired()
