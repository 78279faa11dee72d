"""Celery tasks of the guardrails app: thin wrappers (beat runs them)."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage

from accounts.alerts import alert_email
from agents.keyring import KEYRING
from guardrails import checklog
from guardrails.models import ViolationAlert, ViolationAlertEmail
from guardrails.selectors import POLICIES
from oversight import outbox
from oversight.redis_clients import UNAVAILABLE
from oversight.text import email_subject

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def drain_check_log() -> int:
    """Every timer tick: move the logged checks from Redis to the database."""
    try:
        moved = checklog.drain()
    except UNAVAILABLE:
        return 0  # Redis down: nothing new was logged either
    if moved:
        logger.debug("moved %d logged checks to the database", moved)
    return moved


@shared_task(ignore_result=True)
def purge_check_records() -> int:
    return checklog.purge()


@shared_task(ignore_result=True)
def republish_cache_versions() -> None:
    """Every timer tick: the versions of the process caches again (a lost publication heals)."""
    for versioned in (POLICIES, KEYRING):
        versioned.publish()


def _messages(email: ViolationAlertEmail) -> list[EmailMessage]:
    alert = ViolationAlert.objects.select_related("agent").get(pk=email.alert_id)
    link = f"{settings.OVERSIGHT_BASE_URL}/policies/violations/?agent={alert.agent.name}"
    return alert_email(
        subject=email_subject(
            "Repeated guardrail violations: agent {agent}", agent=alert.agent.name
        ),
        message=alert.message,
        link=f"The violations: {link}",
        owner_id=alert.agent.owner_id,
    )


def deliver_alert_email(email_id: uuid.UUID) -> str:
    return outbox.deliver_email(ViolationAlertEmail, email_id, _messages)


@shared_task(ignore_result=True)
def sweep_alert_emails() -> int:
    """Every timer tick: send the violation alert emails that are due (the outbox)."""
    return outbox.sweep(ViolationAlertEmail, deliver_alert_email)
