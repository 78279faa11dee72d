"""Celery tasks of the approvals app: thin wrappers that re-read rows and call the services.

Timers (escalation, expiry) are explained in `approvals.timers`; emails and callbacks go
through the outbox (`oversight.outbox`).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime

from celery import Task, shared_task
from django.utils import timezone

from approvals import callbacks, deadlines, emails, idempotency, services, timers
from approvals.models import (
    ApprovalRequest,
    CallbackAlertEmail,
    CallbackDelivery,
    EmailDelivery,
    Status,
)
from oversight import outbox
from oversight.outbox import DeliveryStatus

logger = logging.getLogger(__name__)

# --- timers ----------------------------------------------------------------------------------


def _deadline(request_id: str, token: str, field: str) -> datetime | None:
    """The deadline a timer task is for, or None when the task is moot (the request was
    decided, is gone, or its timers were replaced: the token no longer matches)."""
    return (
        ApprovalRequest.objects.filter(
            pk=uuid.UUID(request_id), timer_token=uuid.UUID(token), status=Status.PENDING
        )
        .values_list(field, flat=True)
        .first()
    )


def _on_time(task: Task, request_id: str, token: str, field: str) -> bool:
    """Wait out a timer task that arrives a little early; send one far too early back."""
    deadline = _deadline(request_id, token, field)
    if deadline is None:
        return False
    early = (deadline - timezone.now()).total_seconds()
    if early > 1:
        task.apply_async((request_id, token), eta=deadline)
        return False
    if early > 0:
        time.sleep(early)
    return True


@shared_task(bind=True, acks_late=True, ignore_result=True)
def escalate_on_time(self: Task, request_id: str, token: str) -> None:
    if _on_time(self, request_id, token, "escalates_at"):
        services.escalate_request(request_id=uuid.UUID(request_id))


@shared_task(bind=True, acks_late=True, ignore_result=True)
def expire_on_time(self: Task, request_id: str, token: str) -> None:
    if _on_time(self, request_id, token, "expires_at"):
        services.expire_request(request_id=uuid.UUID(request_id))


@shared_task(ignore_result=True)
def tick_timers() -> dict[str, int]:
    """Beat, every few seconds: the timers' safety net and the hand-over of near deadlines."""
    handed_over = timers.hand_over()  # first: it is quick, and near deadlines need it
    escalated, expired = timers.sweep()
    if escalated or expired:  # the safety net caught what the timer tasks did not
        logger.info("timer tick: %d escalated, %d expired", escalated, expired)
    return {"handed_over": handed_over, "escalated": escalated, "expired": expired}


# --- outbox: emails and callbacks --------------------------------------------------------------


def _deliver_and_reschedule(delivery_id: uuid.UUID) -> None:
    if callbacks.deliver(delivery_id) != DeliveryStatus.PENDING:
        return
    next_at = (
        CallbackDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    # A retry further off than the timer horizon is left to the sweep: an ETA message held that
    # long could outlive Redis' visibility timeout (see approvals.timers).
    if next_at is not None and next_at <= deadlines.horizon_end(timezone.now()):
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
    return outbox.sweep(CallbackDelivery, callbacks.deliver)


@shared_task(ignore_result=True)
def sweep_emails() -> int:
    """Beat, every tick: send the emails that are due (see approvals.emails), and the alerts
    about callbacks that failed for good (see approvals.callbacks)."""
    sent = outbox.sweep(EmailDelivery, emails.deliver)
    return sent + outbox.sweep(CallbackAlertEmail, callbacks.deliver_alert_email)


@shared_task(ignore_result=True)
def purge_idempotency_keys() -> int:
    """Drop idempotency keys past their retention (kept at least 24 h, SPEC §3)."""
    purged = idempotency.purge_expired()
    if purged:
        logger.info("purged %d idempotency keys past their retention", purged)
    return purged
