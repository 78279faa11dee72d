"""Celery tasks of the budgets app: thin wrappers that re-read rows."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q

from accounts.models import Role, User
from budgets.models import Alert


def alert_recipients(alert: Alert) -> list[str]:
    """Managers and admins, and the owner of the agent whose budget it is."""
    people = User.objects.filter(is_active=True).exclude(email="")
    watchers = Q(groups__name__in=[Role.MANAGER, Role.ADMIN]) | Q(is_superuser=True)
    if alert.budget is not None and alert.budget.agent is not None:
        watchers |= Q(pk=alert.budget.agent.owner_id)
    return sorted(set(people.filter(watchers).values_list("email", flat=True)))


@shared_task(acks_late=True, ignore_result=True)
def email_alert(alert_id: int) -> None:
    alert = Alert.objects.select_related("budget__agent").filter(pk=alert_id).first()
    if alert is None:
        return
    recipients = alert_recipients(alert)
    if not recipients:
        return
    send_mail(
        subject=f"[Oversight] Budget alert: {alert.message[:120]}",
        message=f"{alert.message}\n\nBudgets: {settings.OVERSIGHT_BASE_URL}/budgets/\n",
        from_email=None,
        recipient_list=recipients,
    )
