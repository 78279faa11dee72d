"""The email about an alert (budgets, guardrails, agent controls, monitoring): one message to
the people alerts go to (`selectors.alert_recipients`), the alert's text and where to read more.
The outbox of each app sends it (`oversight.outbox.deliver_email`)."""

from __future__ import annotations

from django.core.mail import EmailMessage

from accounts import selectors


def alert_email(
    *, subject: str, message: str, link: str, owner_id: int | None = None
) -> list[EmailMessage]:
    """The message for an alert about an agent owned by `owner_id` (or about no agent); none
    when nobody who should hear of it has an address."""
    recipients = selectors.alert_recipients(owner_id=owner_id)
    if not recipients:
        return []
    return [EmailMessage(subject=subject, body=f"{message}\n\n{link}\n", to=recipients)]
