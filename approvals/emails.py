"""Emails to the people of a tier about a request (SPEC §8): a new request, an escalation.

The services write an `EmailDelivery` row in the transaction of the change (the outbox, see
`oversight.outbox`); beat's `sweep_emails`, every timer tick (2 s), sends what is due. Unlike
callbacks, no task is queued on commit: an email a second or two later is no loss, and the
agent's create call is spared a broker round trip. Recipients are settled at send time: the active
approvers of the row's tier, without the agent's owner unless self-approval is allowed (they
could not decide it). A request that is no longer pending by then is not worth an email: the
row is marked skipped. Each person gets a message of their own (plain text and HTML, with a link
to the request page), all over one connection of the configured mailer.
"""

from __future__ import annotations

import uuid

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Tier
from accounts.selectors import approvers, stand_ins
from approvals import rules
from approvals.models import ApprovalRequest, EmailDelivery, EmailKind, Status
from approvals.representation import page_url
from oversight import outbox
from oversight.text import email_subject


def recipients(request: ApprovalRequest, tier: str) -> list[str]:
    """The addresses of the active approvers of `tier` who may decide `request`, and of the
    people standing in for those of them who are away (issue 24: delegation)."""
    of_tier = approvers().filter(tier=tier)
    people = of_tier | stand_ins(of_tier, timezone.now())
    if not rules.self_approval_allowed(request.agent):
        people = people.exclude(pk__in=rules.holder_ids(request))
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
    subject = email_subject(
        "{what}: {action} ({risk} risk, {agent})",
        what="Escalated" if escalated else "Approval needed",
        action=request.action,
        risk=request.risk_level,
        agent=request.agent.name,
    )
    return (
        subject,
        render_to_string("email/request.txt", context),
        render_to_string("email/request.html", context),
    )


def deliver(delivery_id: uuid.UUID) -> str:
    """Send one due delivery; returns its status afterwards (see `outbox.deliver_email`)."""
    return outbox.deliver_email(EmailDelivery, delivery_id, _messages)


def _messages(delivery: EmailDelivery) -> list[EmailMessage] | None:
    request = ApprovalRequest.objects.select_related("agent").get(pk=delivery.request_id)
    if request.status != Status.PENDING or request.is_overdue():
        return None  # decided meanwhile: nobody needs asking any more
    delivery.request = request
    subject, text, html = compose(delivery)
    messages: list[EmailMessage] = []
    for address in recipients(request, delivery.tier):
        message = EmailMultiAlternatives(subject, text, to=[address])
        message.attach_alternative(html, "text/html")
        messages.append(message)
    return messages
