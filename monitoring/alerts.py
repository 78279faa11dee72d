"""The monitoring alerts (SPEC §12, the seed's alert thresholds §8.2), evaluated by beat.

`evaluate` finds every condition that holds now, in a few grouped queries:

- **success rate** below 85 % today (UTC), over at least `MIN_SAMPLE` outcomes;
- **cost spike**: the agent's spend in a clock hour (this one or the last) above 2x its normal
  hourly cost: its spend over the 14 days before, per hour in which it spent anything (at
  least `MIN_HOURS` of them);
- **escalation rate** above 30 % of the requests created today, over at least `MIN_SAMPLE`;
- **budget exceeded**: a budget's spend in its current period at or past its limit;
- **repeated violations**: an agent's guardrail violations within the last hour at
  `OVERSIGHT_VIOLATION_ALERT_THRESHOLD` or more (as the guardrails' own alert counts them),
  once per clock hour.

Each condition fires once per (metric, subject, window): the row's unique constraint settles
concurrent evaluations, before the audit append. A firing alert whose condition no longer holds
(its window ended, or the figure recovered) resolves, once: a conditional UPDATE decides which
evaluation records it. Firing is told live, by email and in the audit trail; budgets and
repeated violations already alert the managers live and by email from their own apps
(`budgets.services`, `guardrails.services`), so here they are listed and audited without a second
email.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from approvals import live
from approvals.models import ApprovalRequest
from audit.events import EventType
from audit.services import record_event
from budgets.models import CostRecord
from budgets.selectors import budget_rows, dollars
from controls.models import Outcome
from guardrails.models import Violation
from monitoring.models import AlertState, Metric, MonitorAlert, MonitorAlertEmail

SUCCESS_RATE_MIN = 0.85
COST_SPIKE_FACTOR = 2.0
ESCALATION_RATE_MAX = 0.30
# Rates are judged on at least this many outcomes (or requests) in the window.
MIN_SAMPLE = 10
BASELINE = timedelta(days=14)
# A cost spike is judged once the agent spent in this many hours of its 14-day baseline.
MIN_HOURS = 10
HOUR = timedelta(hours=1)
# A budget's period as the alert's message says it.
SO_FAR = {"hourly": "this hour", "daily": "today", "weekly": "this week", "monthly": "this month"}
# Metrics whose own app already tells the managers live and by email.
TOLD_ELSEWHERE = frozenset({Metric.BUDGET_EXCEEDED, Metric.REPEATED_VIOLATIONS})


@dataclass(frozen=True)
class Finding:
    """A condition that holds: what, about whom, in which window, and the counts behind it."""

    metric: str
    subject: str
    window_start: datetime
    window_end: datetime
    value: float
    threshold: float
    message: str
    agent_id: int | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.metric, self.subject, self.window_start)


def evaluate(now: datetime | None = None) -> dict[str, int]:
    """Fire what holds and has not fired in its window; resolve what no longer holds."""
    now = now or timezone.now()
    found = findings(now)
    fired = sum(1 for finding in found if fire(finding, now=now) is not None)
    holding = {finding.key for finding in found}
    resolved = 0
    # Only what fired before these findings were made: an evaluation running alongside (a slow
    # one, and the next) may have fired since on a condition these findings predate.
    firing = MonitorAlert.objects.filter(state=AlertState.FIRING, fired_at__lt=now)
    for alert in firing.select_related("agent"):
        if (alert.metric, alert.subject, alert.window_start) not in holding and resolve(alert, now):
            resolved += 1
    return {"fired": fired, "resolved": resolved, "holding": len(found)}


def findings(now: datetime) -> list[Finding]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    names = dict(Agent.objects.values_list("pk", "name"))
    found: list[Finding] = []

    outcomes = (
        Outcome.objects.filter(created_at__gte=day, created_at__lte=now)
        .values("agent_id")
        .annotate(n=Count("pk"), ok=Count("pk", filter=Q(success=True)))
    )
    for row in outcomes:
        rate = row["ok"] / row["n"]
        if row["n"] >= MIN_SAMPLE and rate < SUCCESS_RATE_MIN:
            found.append(
                Finding(
                    Metric.SUCCESS_RATE,
                    names[row["agent_id"]],
                    day,
                    day + timedelta(days=1),
                    rate,
                    SUCCESS_RATE_MIN,
                    f"{names[row['agent_id']]}: success rate {rate:.0%} today "
                    f"({row['ok']} of {row['n']} outcomes), below 85 %.",
                    row["agent_id"],
                    {"outcomes": row["n"], "successes": row["ok"]},
                )
            )

    found += _cost_spikes(hour, now, names)

    created = (
        ApprovalRequest.objects.filter(created_at__gte=day, created_at__lte=now)
        .values("agent_id")
        .annotate(n=Count("pk"), up=Count("pk", filter=Q(escalated_at__isnull=False)))
    )
    for made in created:
        rate = made["up"] / made["n"]
        if made["n"] >= MIN_SAMPLE and rate > ESCALATION_RATE_MAX:
            found.append(
                Finding(
                    Metric.ESCALATION_RATE,
                    names[made["agent_id"]],
                    day,
                    day + timedelta(days=1),
                    rate,
                    ESCALATION_RATE_MAX,
                    f"{names[made['agent_id']]}: {rate:.0%} of today's requests escalated "
                    f"({made['up']} of {made['n']}), above 30 %.",
                    made["agent_id"],
                    {"requests": made["n"], "escalated": made["up"]},
                )
            )

    for budget_row in budget_rows(now):
        state = budget_row.state
        if state.status != "exceeded":
            continue
        budget = budget_row.budget
        found.append(
            Finding(
                Metric.BUDGET_EXCEEDED,
                f"budget:{budget.pk}",
                state.window.start,
                state.window.end,
                state.percent / 100,
                1.0,
                f"The {state.rule.label} is exceeded: {dollars(state.spent_cents)} of "
                f"{dollars(state.rule.limit_cents)} {SO_FAR[budget.period]}.",
                budget.agent_id,
                {"budget": state.rule.label, "spent_cents": str(state.spent_cents)},
            )
        )

    # Within the hour before now, as the guardrails' own alert counts them (SPEC §6), once per
    # clock hour: a burst across the hour is one burst.
    limit = settings.OVERSIGHT_VIOLATION_ALERT_THRESHOLD
    violations = (
        Violation.objects.filter(created_at__gt=now - HOUR, created_at__lte=now)
        .values("agent_id")
        .annotate(count=Count("pk"))
        .filter(count__gte=limit)
    )
    for counted in violations:
        name, count = names[counted["agent_id"]], counted["count"]
        found.append(
            Finding(
                Metric.REPEATED_VIOLATIONS,
                name,
                hour,
                hour + HOUR,
                count,
                limit,
                f"{name}: {count} guardrail violations within the hour to {now:%H:%M} UTC "
                f"(alert at {limit}).",
                counted["agent_id"],
                {"violations": count},
            )
        )
    return found


def _cost_spikes(hour: datetime, now: datetime, names: dict[int, str]) -> list[Finding]:
    """Spend in this hour and the last against 2x the agent's normal hourly spend: its spend
    over the 14 days before the last hour per hour it spent anything (an agent that works
    office hours is not spiking every working hour), judged once it spent in `MIN_HOURS`."""
    last = hour - HOUR
    before = Q(created_at__lt=last)
    spend = (
        CostRecord.objects.filter(created_at__gte=last - BASELINE, created_at__lte=now)
        .values("agent_id")
        .annotate(
            baseline=Sum("cost_cents", filter=before),
            hours=Count(TruncHour("created_at", tzinfo=UTC), filter=before, distinct=True),
            last=Sum("cost_cents", filter=Q(created_at__gte=last, created_at__lt=hour)),
            this=Sum("cost_cents", filter=Q(created_at__gte=hour)),
        )
    )
    found = []
    for row in spend:
        if row["hours"] < MIN_HOURS or not row["baseline"]:
            continue
        normal = float(row["baseline"]) / row["hours"]
        for start, cents in ((last, row["last"]), (hour, row["this"])):
            value = float(cents or 0)
            if value > COST_SPIKE_FACTOR * normal:
                name = names[row["agent_id"]]
                found.append(
                    Finding(
                        Metric.COST_SPIKE,
                        name,
                        start,
                        start + HOUR,
                        value / normal,
                        COST_SPIKE_FACTOR,
                        f"{name}: spent {dollars(_cents(value))} in the hour from "
                        f"{start:%H:%M} UTC, {value / normal:.1f}x its normal hourly "
                        f"{dollars(_cents(normal))}.",
                        row["agent_id"],
                        {"hour_cents": round(value, 6), "normal_hourly_cents": round(normal, 6)},
                    )
                )
    return found


def _cents(value: float) -> Decimal:
    return Decimal(str(round(value, 6)))


@transaction.atomic
def fire(finding: Finding, *, now: datetime | None = None) -> MonitorAlert | None:
    """The alert for `finding`, once per (metric, subject, window); None if it fired already."""
    alert = MonitorAlert(
        fired_at=now or timezone.now(),
        metric=finding.metric,
        agent_id=finding.agent_id,
        subject=finding.subject,
        window_start=finding.window_start,
        window_end=finding.window_end,
        value=finding.value,
        threshold=finding.threshold,
        message=finding.message,
        evidence=finding.evidence,
    )
    try:
        with transaction.atomic():
            alert.save(force_insert=True)
    except IntegrityError:
        return None
    told = finding.metric not in TOLD_ELSEWHERE
    if told:
        MonitorAlertEmail.objects.create(alert=alert)
    record_event(
        event_type=EventType.MONITOR_ALERT_FIRED,
        subject=alert,
        payload={
            "metric": alert.metric,
            "subject": alert.subject,
            "window_start": alert.window_start,
            "window_end": alert.window_end,
            "value": alert.value,
            "threshold": alert.threshold,
            "message": alert.message,
            "evidence": alert.evidence,
        },
    )
    if told:
        notice = live.Notice(title=title(alert), message=alert.message, url=link())
        transaction.on_commit(lambda: live.announce_to_managers(notice), robust=True)
    return alert


@transaction.atomic
def resolve(alert: MonitorAlert, now: datetime) -> bool:
    """Mark a firing alert resolved; False if another evaluation did first."""
    changed = MonitorAlert.objects.filter(pk=alert.pk, state=AlertState.FIRING).update(
        state=AlertState.RESOLVED, resolved_at=now
    )
    if not changed:
        return False
    record_event(
        event_type=EventType.MONITOR_ALERT_RESOLVED,
        subject=alert,
        payload={"metric": alert.metric, "subject": alert.subject, "fired_at": alert.fired_at},
    )
    return True


def title(alert: MonitorAlert) -> str:
    return f"Monitoring: {Metric(alert.metric).label}"


def link() -> str:
    return reverse("monitoring:page") + "#alerts"
