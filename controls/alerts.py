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
    """Raise an alert in the caller's transaction (`claim`, then `record`); None when a cascade
    alert for this team and hour exists already. It appends to the audit chain: call it after
    the caller's other writes, or `claim` first and `record` last."""
    row = claim(kind, message, agent=agent, team=team, window_start=window_start)
    if row is not None:
        record(row)
    return row


def claim(
    kind: str,
    message: str,
    *,
    agent: Agent | None = None,
    team: str = "",
    window_start: datetime | None = None,
) -> AgentAlert | None:
    """The alert's row and its email, no audit yet; None when a cascade alert for this team and
    hour exists already (another process's failure reached it first: its insert is settled by
    the unique constraint, so take it before any audit append, which holds the chain's lock)."""
    row = AgentAlert(kind=kind, agent=agent, team=team, window_start=window_start, message=message)
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return None
    AgentAlertEmail.objects.create(alert=row)
    return row


def record(row: AgentAlert) -> None:
    """The claimed alert's audit event, and its live notice once the transaction commits."""
    agent = row.agent
    record_event(
        event_type=EventType.AGENT_ALERT,
        subject=row,
        payload={
            "kind": row.kind,
            "agent": agent.name if agent else None,
            "team": row.team or None,
            "message": row.message,
        },
    )
    notice = live.Notice(title=TITLES[AlertKind(row.kind)], message=row.message, url=link(row))
    transaction.on_commit(lambda: live.announce_to_managers(notice), robust=True)


def link(row: AgentAlert) -> str:
    """Where a manager reads more: the agent's page, or the agents of the team."""
    if row.agent is not None:
        return reverse("agents:detail", args=[row.agent.name])
    return reverse("agents:list") + "?" + urlencode({"team": row.team})
