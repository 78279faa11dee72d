"""Celery tasks of the audit app: thin wrappers (beat runs them)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.urls import reverse

from accounts import selectors as people
from accounts.models import Role
from audit import checkpoints, reports, siem
from audit.models import SummaryEmail
from oversight import outbox
from oversight.text import duration, email_subject


@shared_task(ignore_result=True)
def make_checkpoint() -> int | None:
    """Every OVERSIGHT_CHECKPOINT_CHECK_SECONDS: extend the tree, sign a checkpoint when due."""
    made = checkpoints.make()
    return made.size if made else None


@shared_task(ignore_result=True)
def ship_siem() -> dict[str, int]:
    """Every timer tick (outbound queue): ship the audit events each configured SIEM destination
    has not accepted yet (audit.siem); a quick no-op when none is configured or behind."""
    return siem.ship_all()


# --- the weekly compliance summary (SPEC §7) ---------------------------------------------------


@shared_task(ignore_result=True)
def write_weekly_summary() -> str | None:
    """Every few minutes (beat): write last week's summary email once, when the week is over.
    Idempotent: a week that has one is left alone, so a beat that was down on Monday catches
    up, and two beats write one."""
    email = reports.queue_weekly_summary()
    return email.period_start.isoformat() if email else None


def compliance_recipients() -> list[str]:
    """Everyone who holds the compliance role (superusers hold every role) and has an email."""
    return people.emails_of(Role.COMPLIANCE)


def _summary_messages(email: SummaryEmail) -> list[EmailMessage]:
    """One message per person, with the week's figures as they stand when it is sent."""
    recipients = compliance_recipients()
    if not recipients:
        return []
    period = reports.Period(email.period_start, email.period_end)
    report = reports.build(period)
    query = urlencode({"first": period.first_day, "last": period.last_day})
    body = render_to_string(
        "audit/summary_email.txt",
        {
            "report": report,
            "median": duration(report.decisions.median_seconds),
            "p90": duration(report.decisions.p90_seconds),
            "security": [figure for figure in report.security if figure.count],
            "integrity": reports.integrity_sentence(report),
            "link": f"{settings.OVERSIGHT_BASE_URL}{reverse('audit:report')}?{query}",
        },
    )
    subject = email_subject(
        "Weekly compliance summary, {first} to {last}",
        first=period.first_day,
        last=period.last_day,
    )
    return [EmailMessage(subject=subject, body=body, to=[address]) for address in recipients]


def deliver_summary_email(email_id: uuid.UUID) -> str:
    return outbox.deliver_email(SummaryEmail, email_id, _summary_messages)


@shared_task(ignore_result=True)
def sweep_summary_emails() -> int:
    """Every minute (beat, email queue): send the weekly summary when it is due (the outbox)."""
    return outbox.sweep(SummaryEmail, deliver_summary_email)
