"""Emails to the people of a tier about a request (SPEC §8): a new request, an escalation.

The services write an `EmailDelivery` row in the transaction of the change (the outbox, see
`approvals.outbox`); beat's `sweep_emails`, every timer tick (2 s), sends what is due. Unlike
callbacks, no task is queued on commit: an email a second or two later is no loss, and the
agent's create call is spared a broker round trip. Recipients are settled at send time: the active
approvers of the row's tier, without the agent's owner unless self-approval is allowed (they
could not decide it). A request that is no longer pending by then is not worth an email: the
row is marked skipped. Each person gets a message of their own (plain text and HTML, with a link
to the request page), all over one connection of the configured mailer.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, mailers
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string

from accounts.models import Role, Tier, User
from approvals import outbox
from approvals.models import ApprovalRequest, DeliveryStatus, EmailDelivery, EmailKind
from approvals.representation import page_url


def recipients(request: ApprovalRequest, tier: str) -> list[str]:
    """The addresses of the active approvers of `tier` who may decide `request`."""
    people = User.objects.filter(is_active=True, tier=tier).filter(
        Q(groups__name=Role.APPROVER) | Q(is_superuser=True)
    )
    if request.agent.owner_id is not None and not settings.OVERSIGHT_ALLOW_SELF_APPROVAL:
        people = people.exclude(pk=request.agent.owner_id)
    return sorted(set(people.exclude(email="").values_list("email", flat=True)))


def compose(delivery: EmailDelivery) -> tuple[str, str, str]:
    """Subject, plain text and HTML of a delivery."""
    request = delivery.request
    escalated = delivery.kind == EmailKind.ESCALATED
    context = {
        "approval": request,
        "escalated": escalated,
        "tier": Tier(delivery.tier).label,
        "url": page_url(request),
    }
    what = "Escalated" if escalated else "Approval needed"
    subject = (
        f"[Oversight] {what}: {request.action} ({request.risk_level} risk, {request.agent.name})"
    )
    return (
        subject,
        render_to_string("email/request.txt", context),
        render_to_string("email/request.html", context),
    )


def deliver(delivery_id: uuid.UUID) -> str:
    """Send one due delivery; returns its status afterwards ('skipped' if not due/leased)."""
    if not outbox.take_lease(EmailDelivery, delivery_id):
        return "skipped"
    delivery = EmailDelivery.objects.select_related("request__agent").get(pk=delivery_id)
    request = delivery.request
    addresses: list[str] = []
    final = ""
    error = ""
    if request.status != "pending" or request.is_overdue():
        final = DeliveryStatus.SKIPPED
    else:
        addresses = recipients(request, delivery.tier)
        subject, text, html = compose(delivery)
        messages = []
        for address in addresses:
            message = EmailMultiAlternatives(subject, text, to=[address])
            message.attach_alternative(html, "text/html")
            messages.append(message)
        try:  # network I/O outside any transaction
            if messages:
                mailers.default.send_messages(messages)
        except Exception as exc:  # an unreachable mail server: record it and back off
            error = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        settled = outbox.settle(EmailDelivery, delivery_id, error=error, status=final)
        settled.sent_to = [] if error else addresses
        settled.last_error = error
        settled.save(update_fields=["sent_to", "last_error"])
    return settled.status
