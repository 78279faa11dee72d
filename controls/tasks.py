"""Celery tasks of the agent controls: thin wrappers (beat runs them)."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage

from accounts.alerts import alert_email
from controls import alerts, services
from controls.models import AgentAlert, AgentAlertEmail, AlertKind
from oversight import outbox
from oversight.text import email_subject


@shared_task(ignore_result=True)
def refresh_autonomy() -> dict[str, int]:
    """Every OVERSIGHT_AUTONOMY_REFRESH_SECONDS: the recommendations, lowerings, trial ends."""
    return services.refresh_autonomy()


def _messages(email: AgentAlertEmail) -> list[EmailMessage]:
    alert = AgentAlert.objects.select_related("agent").get(pk=email.alert_id)
    return alert_email(
        subject=email_subject(
            "{title}: {about}",
            title=alerts.TITLES[AlertKind(alert.kind)],
            about=alert.agent.name if alert.agent else f"team {alert.team}",
        ),
        message=alert.message,
        link=f"{settings.OVERSIGHT_BASE_URL}{alerts.link(alert)}",
        owner_id=alert.agent.owner_id if alert.agent else None,
    )


def deliver_alert_email(email_id: uuid.UUID) -> str:
    return outbox.deliver_email(AgentAlertEmail, email_id, _messages)


@shared_task(ignore_result=True)
def sweep_alert_emails() -> int:
    """Every timer tick: send the agent alert emails that are due (the outbox)."""
    return outbox.sweep(AgentAlertEmail, deliver_alert_email)
