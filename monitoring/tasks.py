"""Celery tasks of monitoring (SPEC §12): thin wrappers that beat runs."""

from __future__ import annotations

import uuid
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import selectors as people
from accounts.alerts import alert_email
from accounts.models import Role
from audit.reports import previous_week
from monitoring import alerts, fairness, rollup
from monitoring.models import FairnessReport, MonitorAlert, MonitorAlertEmail
from oversight import outbox
from oversight.text import email_subject


@shared_task(ignore_result=True)
def evaluate_alerts() -> dict[str, int]:
    """Every OVERSIGHT_MONITORING_EVALUATE_SECONDS: fire and resolve the monitoring alerts."""
    return alerts.evaluate()


@shared_task(ignore_result=True)
def roll_days() -> int:
    """Every few minutes: roll up the finished days that have no final rollup yet."""
    return len(rollup.roll_pending())


def _alert_messages(email: MonitorAlertEmail) -> list[EmailMessage]:
    alert = MonitorAlert.objects.select_related("agent").get(pk=email.alert_id)
    return alert_email(
        subject=email_subject("{title}: {about}", title=alerts.title(alert), about=alert.subject),
        message=alert.message,
        link=f"{settings.OVERSIGHT_BASE_URL}{alerts.link()}",
        owner_id=alert.agent.owner_id if alert.agent else None,
    )


def deliver_alert_email(email_id: uuid.UUID) -> str:
    return outbox.deliver_email(MonitorAlertEmail, email_id, _alert_messages)


@shared_task(ignore_result=True)
def sweep_alert_emails() -> int:
    """Every timer tick: send the monitoring alert emails that are due (the outbox)."""
    return outbox.sweep(MonitorAlertEmail, deliver_alert_email)


def queue_fairness_report(*, now: datetime | None = None) -> FairnessReport | None:
    """Write last week's fairness report (Monday 00:00 UTC to Monday) once, with its figures as
    they stand now; None when the week has one (another beat, a restart)."""
    week = previous_week(now or timezone.now())
    if FairnessReport.objects.filter(week_start=week.since).exists():
        return None
    figures = fairness.as_json(
        fairness.approval_rates(week.since, week.until),
        fairness.selection_bias(week.since, week.until),
    )
    try:
        with transaction.atomic():
            return FairnessReport.objects.create(
                week_start=week.since, week_end=week.until, figures=figures
            )
    except IntegrityError:
        return None


@shared_task(ignore_result=True)
def write_fairness_report() -> str | None:
    """Every few minutes (beat): write last week's fairness report once the week is over."""
    report = queue_fairness_report()
    return report.week_start.isoformat() if report else None


def _report_messages(report: FairnessReport) -> list[EmailMessage]:
    # The managers: the report names approvers with their votes (SPEC §12, never to peers).
    recipients = people.emails_of(Role.MANAGER)
    if not recipients:
        return []
    link = f"{settings.OVERSIGHT_BASE_URL}/monitoring/#fairness"
    return [
        EmailMessage(
            subject=email_subject(
                "Fairness report, week of {week}", week=f"{report.week_start:%Y-%m-%d}"
            ),
            body=f"{fairness.report_text(report.figures)}\n\n{link}\n",
            to=recipients,
        )
    ]


def deliver_fairness_report(report_id: uuid.UUID) -> str:
    return outbox.deliver_email(FairnessReport, report_id, _report_messages)


@shared_task(ignore_result=True)
def sweep_fairness_reports() -> int:
    """Every minute: send the weekly fairness reports that are due (the outbox)."""
    return outbox.sweep(FairnessReport, deliver_fairness_report)
