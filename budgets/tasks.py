"""Celery tasks of the budgets app: thin wrappers that re-read rows."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage

from accounts import selectors
from accounts.alerts import alert_email
from budgets.models import Alert, AlertEmail
from oversight import outbox
from oversight.text import email_subject


def _owner_id(alert: Alert) -> int | None:
    """The owner of the agent whose budget it is or that reported the unknown model."""
    agent = alert.budget.agent if alert.budget is not None else alert.agent
    return agent.owner_id if agent is not None else None


def alert_recipients(alert: Alert) -> list[str]:
    """Managers and admins, and the agent's owner (`_owner_id`)."""
    return selectors.alert_recipients(owner_id=_owner_id(alert))


def _messages(email: AlertEmail) -> list[EmailMessage]:
    alert = Alert.objects.select_related("budget__agent", "agent").get(pk=email.alert_id)
    return alert_email(
        subject=email_subject("Budget alert: {message}", message=alert.message),
        message=alert.message,
        link=f"Budgets: {settings.OVERSIGHT_BASE_URL}/budgets/",
        owner_id=_owner_id(alert),
    )


def deliver_alert_email(email_id: uuid.UUID) -> str:
    return outbox.deliver_email(AlertEmail, email_id, _messages)


@shared_task(ignore_result=True)
def sweep_alert_emails() -> int:
    """Beat, every timer tick: send the alert emails that are due (the outbox)."""
    return outbox.sweep(AlertEmail, deliver_alert_email)
