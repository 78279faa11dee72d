"""Alerting the managers about an agent's record (SPEC §6): the circuit breaker pausing an agent,
an execution mismatch, failures across a team, an automatic lowering of autonomy.

Each alert is a row written in the transaction of the change it tells about, with its email in
the outbox (`controls.tasks` sends it) and an `agent.alert` audit event; the live notice goes to
every manager's open pages when that transaction commits.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django.db import IntegrityError, transaction
from django.urls import reverse

from agents.models import Agent
from approvals import live
from audit.events import EventType
from audit.services import record_event
from controls.models import AgentAlert, AgentAlertEmail, AlertKind

TITLES = {
    AlertKind.CIRCUIT_BREAKER: "Circuit breaker paused an agent",
    AlertKind.EXECUTION_MISMATCH: "Execution mismatch: agent disabled",
    AlertKind.CASCADE: "Failures across a team",
    AlertKind.AUTONOMY_LOWERED: "Autonomy lowered",
}


def alert(
    kind: str,
    message: str,
    *,
    agent: Agent | None = None,
    team: str = "",
    window_start: datetime | None = None,
) -> AgentAlert | None:
    """Raise an alert in the caller's transaction; None when a cascade alert for this team and
    hour exists already (another process's failure reached it first). Call it after the
    caller's other writes: it appends to the audit chain."""
    row = AgentAlert(kind=kind, agent=agent, team=team, window_start=window_start, message=message)
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return None
    AgentAlertEmail.objects.create(alert=row)
    record_event(
        event_type=EventType.AGENT_ALERT,
        subject=row,
        payload={
            "kind": kind,
            "agent": agent.name if agent else None,
            "team": team or None,
            "message": message,
        },
    )
    notice = live.Notice(title=TITLES[AlertKind(kind)], message=message, url=link(row))
    transaction.on_commit(lambda: live.announce_to_managers(notice), robust=True)
    return row


def link(row: AgentAlert) -> str:
    """Where a manager reads more: the agent's page, or the agents of the team."""
    if row.agent is not None:
        return reverse("agents:detail", args=[row.agent.name])
    return reverse("agents:list") + "?" + urlencode({"team": row.team})
