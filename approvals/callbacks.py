"""Delivering decisions to agents' callback URLs from the outbox (SPEC §3).

A `CallbackDelivery` row is written in the transaction that finalises a request; this module
sends it through the shared outbox machinery (`oversight.outbox`: lease, backoff, sweep), and
records every attempt. Delivery is at-least-once: receivers deduplicate on
`X-Oversight-Delivery`.

Signature: `X-Oversight-Signature: sha256=<hex HMAC-SHA256(webhook secret, "<timestamp>.<body>")>`
with the Unix time in `X-Oversight-Timestamp`; a receiver refuses old timestamps (replay). After
the agent's secret is rotated, and for a grace window, the header lists two signatures,
`sha256=<new>, sha256=<old>`; a receiver accepts the callback when one of them matches.

Callbacks go only to public addresses unless configuration allows more, and to the very address
that was checked (`oversight.outbound`, SPEC §9.11); each attempt ends within its deadline and
reads little of the answer, whatever the receiver does (SPEC §9.6).

A delivery that fails for good (`oversight.outbox`: about a day of retries) is a dead letter:
the agent's owner and the managers get an email (through the outbox, at most one per agent and
hour), the request's page and the admin show it, and `retry_callback` (the admin's action) sends
it again with a fresh schedule, audited as `callback.retried`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from urllib.parse import quote

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts import selectors as people
from accounts.models import Role, User
from agents.models import Agent
from approvals import effects
from approvals.models import ApprovalRequest, CallbackAlertEmail, CallbackAttempt, CallbackDelivery
from approvals.representation import page_url
from audit.events import EventType
from audit.services import record_event
from oversight import outbound, outbox
from oversight.outbox import DeliveryStatus
from oversight.text import email_subject

logger = logging.getLogger(__name__)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def signature_header(secrets: list[str], timestamp: int, body: bytes) -> str:
    """One signature per secret, the current secret's first, as an HTTP list (`, `)."""
    return ", ".join(sign(secret, timestamp, body) for secret in secrets)


def deliver(delivery_id: uuid.UUID) -> str:
    """Attempt one due delivery; returns its status afterwards ('skipped' if not due/leased)."""
    if outbox.take_lease(CallbackDelivery, delivery_id, on_give_up=_dead_lettered) is None:
        return "skipped"
    delivery = CallbackDelivery.objects.select_related("request__agent").get(pk=delivery_id)
    body = delivery.body.encode()
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    interrupted: SoftTimeLimitExceeded | None = None
    try:  # network I/O outside any transaction
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Oversight-Callback/1",
            "X-Oversight-Delivery": str(delivery.pk),
            "X-Oversight-Timestamp": str(timestamp),
            # Signed at send time with the secrets valid then: after a rotation both the new
            # and, during its grace window, the replaced one.
            "X-Oversight-Signature": signature_header(
                delivery.request.agent.signing_secrets(), timestamp, body
            ),
        }
        # Resolved once, every address checked, the connection made to a checked one; over
        # within the attempt's deadline, whatever the receiver does.
        answer = outbound.post(
            delivery.url,
            content=body,
            headers=headers,
            allow_private=settings.OVERSIGHT_CALLBACK_ALLOW_PRIVATE,
            allowed_networks=settings.OVERSIGHT_CALLBACK_ALLOW_NETWORKS,
        )
        status_code = answer.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except SoftTimeLimitExceeded as exc:  # recorded as a failure, then the task stops
        error, interrupted = "stopped at the task's time limit", exc
    except Exception as exc:  # an unusable URL too: record it and back off, never jam the outbox
        error = f"{type(exc).__name__}: {exc}"[:2000]
    duration_ms = int((time.monotonic() - started) * 1000)

    with transaction.atomic():
        settled = outbox.settle(
            CallbackDelivery, delivery_id, error=error, on_give_up=_dead_lettered
        )
        CallbackAttempt.objects.create(
            delivery=settled, status_code=status_code, error=error, duration_ms=duration_ms
        )
    if interrupted is not None:
        raise interrupted
    return settled.status


def _dead_lettered(delivery: CallbackDelivery) -> None:
    """Tell the agent's owner and the managers, by email through the outbox: one email per agent
    and clock hour, listing every dead letter of the agent when it is sent."""
    now = timezone.now()
    agent_id = ApprovalRequest.objects.values_list("agent_id", flat=True).get(
        pk=delivery.request_id
    )
    CallbackAlertEmail.objects.bulk_create(
        [
            CallbackAlertEmail(
                agent_id=agent_id, window_start=now.replace(minute=0, second=0, microsecond=0)
            )
        ],
        ignore_conflicts=True,  # the hour's email is queued already: it will list this one too
    )


def retry_callback(*, delivery_id: uuid.UUID, actor: User) -> CallbackDelivery:
    """Send a dead-lettered callback again (once the agent's endpoint is fixed), with a fresh
    schedule of attempts, starting now; audited as `callback.retried`.

    Raises PermissionDenied unless the actor is a manager or an admin, and NotDeadLettered for
    a delivery that has not failed for good (a pending one is being retried already; a
    delivered or skipped one is done)."""
    if not (actor.has_role(Role.MANAGER) or actor.has_role(Role.ADMIN)):
        raise PermissionDenied("Only managers and admins retry callbacks.")
    with transaction.atomic():
        delivery = CallbackDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status != DeliveryStatus.FAILED:
            raise NotDeadLettered(
                f"This callback is {delivery.get_status_display().lower()}, not failed for good: "
                "there is nothing to retry."
            )
        failed_attempts = delivery.attempts
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.lease_until = None
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "lease_until"])
        record_event(
            event_type=EventType.CALLBACK_RETRIED,
            actor=actor,
            subject=delivery,
            payload={
                "request_id": str(delivery.request_id),
                "url": delivery.url,
                "failed_attempts": failed_attempts,
            },
        )
        transaction.on_commit(lambda: _queue(delivery.pk))
    return delivery


class NotDeadLettered(Exception):
    """Only a callback that failed for good can be retried."""


def with_last_error(deliveries: QuerySet[CallbackDelivery]) -> QuerySet[CallbackDelivery]:
    """Each delivery with the error of its latest attempt (`last_error`), in the same query."""
    latest = CallbackAttempt.objects.filter(delivery=OuterRef("pk")).order_by("-attempted_at")
    return deliveries.annotate(last_error=Subquery(latest.values("error")[:1]))


# --- the alert about dead letters ------------------------------------------------------------

ALERT_LISTED = 10  # dead letters spelled out in one email; the admin's list has them all


def deliver_alert_email(email_id: uuid.UUID) -> str:
    return outbox.deliver_email(CallbackAlertEmail, email_id, _alert_messages)


def _alert_messages(email: CallbackAlertEmail) -> list[EmailMessage] | None:
    agent = Agent.objects.get(pk=email.agent_id)
    failed = with_last_error(
        CallbackDelivery.objects.filter(request__agent=agent, status=DeliveryStatus.FAILED)
        .select_related("request")
        .order_by("-created_at")
    )
    listed = list(failed[:ALERT_LISTED])
    if not listed:
        return None  # retried meanwhile: nothing to tell
    recipients = people.alert_recipients(owner_id=agent.owner_id)
    if not recipients:
        return []
    lines = []
    for delivery in listed:
        request = delivery.request
        lines.append(
            f"- {request.action} ({request.status}), {page_url(request)}\n"
            f"  {delivery.url}: {delivery.attempts} attempts, "
            f"the last: {delivery.last_error or 'no error recorded'}"  # type: ignore[attr-defined]
        )
    more = failed.count() - len(listed) if len(listed) == ALERT_LISTED else 0
    if more:
        lines.append(f"- and {more} more")
    retry_at = (
        f"{settings.OVERSIGHT_BASE_URL}/admin/approvals/callbackdelivery/"
        f"?status__exact=failed&q={quote(agent.name)}"
    )
    body = (
        f"Oversight has stopped trying to deliver these decisions to the callback URL of agent "
        f"{agent.name}: its attempts failed for about a day.\n\n"
        + "\n".join(lines)
        + "\n\nThe agent was not told these decisions by callback; it can still read each one "
        "with GET /api/v1/approval-requests/{id}. Once its endpoint works again, an admin can "
        'send them again from the admin (select them, then "Retry the selected callbacks"): '
        f"{retry_at}\n"
    )
    subject = email_subject("Callbacks failed for good: agent {agent}", agent=agent.name)
    return [EmailMessage(subject=subject, body=body, to=recipients)]


def _queue(delivery_id: uuid.UUID) -> None:
    try:
        effects.queue_callback_retry(delivery_id)
    except Exception:  # broker down: the row is due now, and the sweep takes it
        logger.warning("could not queue the retry of callback %s; the sweep will", delivery_id)
