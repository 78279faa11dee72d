"""Beat's work for people: delegations whose time is up are closed (and audited)."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(name="accounts.tasks.end_lapsed_delegations", ignore_result=True)
def end_lapsed_delegations() -> int:
    return services.end_lapsed()
