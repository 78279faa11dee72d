"""The circuit breaker (SPEC §6): failures and people's rejections in a row, per agent.

The count is the agent's own field (`Agent.consecutive_failures`), changed only under the
agent's row lock, so outcomes reported at the same time count one after the other and each
threshold is crossed exactly once: at OVERSIGHT_BREAKER_OPEN_AFTER (3) the breaker opens
(`breaker_opened_at`) and every check needs a person (the check reads that from its verified
copy of the agent; the running count itself does not invalidate the copies); at
OVERSIGHT_BREAKER_PAUSE_AFTER (5) the agent is paused (reason `circuit_breaker`) and the
managers are alerted. A success or a manager's resume (`agents.services.set_agent_status`)
closes it.

Failures from several agents of one team within CASCADE_WINDOW alert the managers once per team
and clock hour (cascade detection).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from agents import keyring
from agents import services as agents
from agents.models import Agent, AgentStatus
from audit.events import EventType
from audit.services import record_event
from controls import alerts
from controls.models import AgentAlert, AlertKind, Outcome

CASCADE_WINDOW = timedelta(minutes=5)
CASCADE_AGENTS = 3

FAILURE = "failure"
REJECTION = "rejection"
MISMATCH = "mismatch"


def lock(agent_id: int) -> Agent:
    """The agent, locked for the rest of the transaction: take it before any request's lock
    (the order `agents.services.set_agent_status` takes them in).

    FOR NO KEY UPDATE, as every lock of an agent row: it excludes the other lockers, not the
    foreign-key checks of rows that name the agent. Django defers those to COMMIT, after the
    audit append, with the chain's lock held: a FOR UPDATE here made a denied check of the
    same agent and this lock wait for each other (tests/security/test_agent_row_lock.py)."""
    return Agent.objects.select_for_update(of=("self",), no_key=True).get(pk=agent_id)


def failed(agent: Agent, *, cause: str, now: datetime | None = None) -> int:
    """Count one failure or rejection of `agent`, locked by the caller (`lock`); open or trip the
    breaker on the threshold it reaches. Returns the new count. Call it before the caller's own
    audit appends: it takes the locks of a pause (the agent's pending requests) and of a
    cascade alert (its unique row) before its own appends, and so must the caller."""
    now = now or timezone.now()
    count = agent.consecutive_failures + 1
    opens = count == settings.OVERSIGHT_BREAKER_OPEN_AFTER
    Agent.objects.filter(pk=agent.pk).update(
        consecutive_failures=F("consecutive_failures") + 1,
        **({"breaker_opened_at": now} if opens else {}),
    )
    agent.consecutive_failures = count
    if opens:
        # The count alone leaves the keyring as it is (agents migration 0008); opening the
        # breaker changes what the check answers, so every process reads the agent again.
        keyring.KEYRING.changed()
        agent.breaker_opened_at = now
    # Locks and inserts first, audit appends last (see above).
    raised = []
    if opens or cause == FAILURE:
        raised.append(_cascade(agent, now))
    if count == settings.OVERSIGHT_BREAKER_PAUSE_AFTER and agent.status == AgentStatus.ACTIVE:
        raised.append(
            alerts.claim(
                AlertKind.CIRCUIT_BREAKER,
                f"Agent {agent.name} was paused by its circuit breaker after {count} failures "
                "or rejections in a row. A manager's resume closes the breaker.",
                agent=agent,
            )
        )
        reason = f"circuit_breaker: {count} failures or rejections in a row"
        agents.set_agent_status(agent=agent, status=AgentStatus.PAUSED, reason=reason)
    if opens:
        record_event(
            event_type=EventType.BREAKER_OPENED,
            subject=agent,
            payload={"consecutive_failures": count, "cause": cause},
        )
    for row in raised:
        if row is not None:
            alerts.record(row)
    return count


def succeeded(agent: Agent) -> bool:
    """A success closes the breaker. True when it was counting (the count is back to 0)."""
    count = agent.consecutive_failures
    if count == 0:
        return False
    was_open = agent.breaker_opened_at is not None
    # Only an open breaker's closing is named in the UPDATE: SQLite's keyring trigger fires on
    # any column named (agents migration 0008), and the count alone must not raise it.
    Agent.objects.filter(pk=agent.pk).update(
        consecutive_failures=0, **({"breaker_opened_at": None} if was_open else {})
    )
    if was_open:
        keyring.KEYRING.changed()
    agent.consecutive_failures = 0
    agent.breaker_opened_at = None
    if was_open:
        record_event(
            event_type=EventType.BREAKER_CLOSED,
            actor=agent,
            subject=agent,
            payload={"consecutive_failures": count, "cause": "success"},
        )
    return True


def _cascade(agent: Agent, now: datetime) -> AgentAlert | None:
    """Failures or breakers from CASCADE_AGENTS agents of one team within CASCADE_WINDOW: one
    incident alert per team and clock hour (claimed; the caller records it)."""
    if not agent.team:
        return None
    since = now - CASCADE_WINDOW
    failing = set(
        Outcome.objects.filter(agent__team=agent.team, success=False, created_at__gte=since)
        .values_list("agent_id", flat=True)
        .distinct()
    )
    failing |= set(
        Agent.objects.filter(team=agent.team)
        .filter(Q(breaker_opened_at__gte=since) | Q(pk=agent.pk))
        .values_list("pk", flat=True)
    )
    if len(failing) < CASCADE_AGENTS:
        return None
    return alerts.claim(
        AlertKind.CASCADE,
        f"{len(failing)} agents of team {agent.team} failed or tripped their circuit breakers "
        f"within {int(CASCADE_WINDOW.total_seconds() // 60)} minutes.",
        team=agent.team,
        window_start=now.replace(minute=0, second=0, microsecond=0),
    )
