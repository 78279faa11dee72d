"""Agent health per agent and overall, per day (SPEC §12, the seed's daily checks §8.2).

Each figure is aggregated in SQL, grouped by agent and UTC day, in one query per source (seven in
all, whatever the data's size); the overall figures and the period's totals are sums of those
groups. What is measured:

- **Success rate** (> 90 %): outcomes that succeeded ÷ outcomes reported (`controls.Outcome`).
- **Error rate** (< 5 %): outcomes that failed *with an error* (the agent reported an exception)
  ÷ outcomes; a failure without one is an unsuccessful result, not an error.
- **Cost per task** (within 10 % of the baseline): the day's spend (`budgets.CostRecord`) ÷ the
  day's outcomes; the baseline is the same over the 14 days before.
- **Guardrail violations** (< 5 a day), **human interventions** (approvals, rejections, and
  requests decided with changed arguments), **escalation rate** (requests created that day that
  escalated ÷ created; above 30 % warns), **escalation resolution time** (the mean time from
  escalation to decision of the escalated requests decided that day), **override rate**
  (rejected or changed ÷ decided by people) and **autonomy transitions** (`autonomy.changed`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from approvals.models import ApprovalRequest, Status, Urgency, Vote, VoteChoice
from audit.events import EventType
from audit.models import AuditEvent
from budgets.models import CostRecord
from controls.models import Outcome
from guardrails.models import Violation
from monitoring.models import AgentDay, RolledDay
from oversight.sql import EpochSeconds

BASELINE_DAYS = 14
# A day's rollup is final when it was made this long after the day ended: by then every request
# created that day has ended (a request waits 24 hours at most, escalating half-way; its votes
# are voided only while it waits), so nothing counted for the day changes, and its last
# transactions have committed.
SETTLE = max(Urgency.time_limit(urgency) for urgency in Urgency.values) + timedelta(minutes=5)

# The seed's daily thresholds (§8.2); `None`: tracked, no threshold.
SUCCESS_RATE_MIN = 0.90
ERROR_RATE_MAX = 0.05
COST_DRIFT_MAX = 0.10
VIOLATIONS_PER_DAY_MAX = 5
ESCALATION_RATE_WARN = 0.30


@dataclass(frozen=True)
class Day:
    """One agent's (or everyone's) figures for one UTC day, with the counts behind them."""

    day: date
    outcomes: int = 0
    successes: int = 0
    errors: int = 0
    spend_cents: float = 0.0
    violations: int = 0
    approvals: int = 0
    rejections: int = 0
    changes: int = 0
    created: int = 0
    escalated: int = 0
    decided: int = 0
    overridden: int = 0
    resolved: int = 0
    resolution_seconds: float = 0.0
    transitions: int = 0
    # The spend and outcomes of the 14 days before (set by `_with_baselines`).
    baseline_spend_cents: float = 0.0
    baseline_outcomes: int = 0

    def __add__(self, other: Day) -> Day:
        return replace(
            self,
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in fields(self)
                if f.name != "day"
            },
        )

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.outcomes if self.outcomes else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.outcomes if self.outcomes else None

    @property
    def cost_per_task(self) -> float | None:
        return self.spend_cents / self.outcomes if self.outcomes else None

    @property
    def baseline_cost_per_task(self) -> float | None:
        if not self.baseline_outcomes:
            return None
        return self.baseline_spend_cents / self.baseline_outcomes

    @property
    def cost_drift(self) -> float | None:
        """How far the cost per task is from the baseline (0.1 = 10 % above)."""
        cost, baseline = self.cost_per_task, self.baseline_cost_per_task
        if cost is None or not baseline:
            return None
        return cost / baseline - 1

    @property
    def interventions(self) -> int:
        return self.approvals + self.rejections + self.changes

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.created if self.created else None

    @property
    def resolution_time(self) -> float | None:
        """Mean seconds from escalation to decision."""
        return self.resolution_seconds / self.resolved if self.resolved else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.decided if self.decided else None


# The counted fields of a day, as `AgentDay` stores them.
FIGURES = tuple(
    f.name for f in fields(Day) if f.name != "day" and not f.name.startswith("baseline")
)


@dataclass(frozen=True)
class Health:
    """The period's days (oldest first), overall and per agent id, and the period's totals."""

    days: list[date]
    overall: list[Day]
    by_agent: dict[int, list[Day]] = field(default_factory=dict)

    @property
    def total(self) -> Day:
        return _total(self.overall)

    def agent_totals(self) -> dict[int, Day]:
        return {agent_id: _total(days) for agent_id, days in self.by_agent.items()}


def _total(days: list[Day]) -> Day:
    total = Day(day=days[-1].day if days else date.today())
    for day in days:
        total = total + day
    # The period's baseline is the 14 days before its first day.
    if days:
        total = replace(
            total,
            baseline_spend_cents=days[0].baseline_spend_cents,
            baseline_outcomes=days[0].baseline_outcomes,
        )
    return total


def health(end: date, days: int, *, agent_ids: Iterable[int] | None = None) -> Health:
    """The `days` UTC days up to and including `end`, for the given agents (None: all).

    Finished days that beat rolled up (`monitoring.rollup`) are read from their rows; the rest,
    from the oldest day that is not final to `end` (usually yesterday and today), are
    aggregated from the records themselves: nine queries in all, whatever the data's size."""
    ids = None if agent_ids is None else list(agent_ids)
    first = end - timedelta(days=days - 1)
    oldest = first - timedelta(days=BASELINE_DAYS)
    final = final_days(oldest, end)
    live = oldest  # the first day that is not final: from it on, aggregated from the records
    while live <= end and live in final:
        live += timedelta(days=1)
    rolled = AgentDay.objects.filter(day__gte=oldest, day__lt=live)
    if ids is not None:
        rolled = rolled.filter(agent_id__in=ids)
    counts: dict[tuple[int, date], dict[str, Any]] = {}
    for row in rolled.values("agent_id", "day", *FIGURES):
        counts[(row.pop("agent_id"), row.pop("day"))] = row
    counts.update(aggregate(_midnight(live), _midnight(end + timedelta(days=1)), ids))

    period = [first + timedelta(days=n) for n in range(days)]
    everything = [first - timedelta(days=BASELINE_DAYS - n) for n in range(BASELINE_DAYS)]
    everything += period
    agents = sorted({agent_id for agent_id, _ in counts})
    by_agent = {}
    for agent_id in agents:
        series = [Day(day=day, **counts.get((agent_id, day), {})) for day in everything]
        by_agent[agent_id] = _with_baselines(series)[BASELINE_DAYS:]
    overall = []
    for n, day in enumerate(period):
        total = Day(day=day)
        for series in by_agent.values():
            total = total + series[n]
        overall.append(total)
    return Health(days=period, overall=overall, by_agent=by_agent)


def _with_baselines(series: list[Day]) -> list[Day]:
    """Each day with the spend and outcomes of the 14 days before it."""
    out = []
    for n, day in enumerate(series):
        window = series[max(0, n - BASELINE_DAYS) : n]
        out.append(
            replace(
                day,
                baseline_spend_cents=sum(d.spend_cents for d in window),
                baseline_outcomes=sum(d.outcomes for d in window),
            )
        )
    return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def final_days(first: date, last: date) -> set[date]:
    """The days in [first, last] whose rollup is final: made after the day ended and settled."""
    rolled = RolledDay.objects.filter(day__gte=first, day__lte=last).values_list("day", "rolled_at")
    return {day for day, at in rolled if at >= _midnight(day + timedelta(days=1)) + SETTLE}


def aggregate(
    since: datetime, until: datetime, agent_ids: list[int] | None
) -> dict[tuple[int, date], dict[str, Any]]:
    """Each (agent id, day)'s figures in [since, until), from the records (seven queries)."""
    counts: dict[tuple[int, date], dict[str, Any]] = defaultdict(dict)
    if since < until:
        for agent_id, day, values in _grouped(since, until, agent_ids):
            counts[(agent_id, day)].update(values)
    return counts


def _grouped(
    since: datetime, until: datetime, agent_ids: list[int] | None
) -> Iterable[tuple[int, date, dict[str, float]]]:
    """(agent id, day, figures) from each source, grouped in SQL."""

    def by_day(model_rows, stamp: str, agent: str = "agent_id"):  # type: ignore[no-untyped-def]
        rows = model_rows.filter(**{f"{stamp}__gte": since, f"{stamp}__lt": until})
        if agent_ids is not None:
            rows = rows.filter(**{f"{agent}__in": agent_ids})
        return rows.annotate(day=TruncDate(stamp, tzinfo=UTC)).values(agent, "day")

    outcomes = by_day(Outcome.objects, "created_at").annotate(
        outcomes=Count("pk"),
        successes=Count("pk", filter=Q(success=True)),
        errors=Count("pk", filter=Q(success=False) & ~Q(error="")),
    )
    for row in outcomes:
        yield row["agent_id"], row["day"], _figures(row, "outcomes", "successes", "errors")

    for row in by_day(CostRecord.objects, "created_at").annotate(spend=Sum("cost_cents")):
        yield row["agent_id"], row["day"], {"spend_cents": float(row["spend"] or 0)}

    for row in by_day(Violation.objects, "created_at").annotate(violations=Count("pk")):
        yield row["agent_id"], row["day"], {"violations": row["violations"]}

    votes = by_day(
        Vote.objects.filter(voided_at__isnull=True), "created_at", "request__agent_id"
    ).annotate(
        approvals=Count("pk", filter=Q(vote=VoteChoice.APPROVE)),
        rejections=Count("pk", filter=Q(vote=VoteChoice.REJECT)),
    )
    for row in votes:
        yield row["request__agent_id"], row["day"], _figures(row, "approvals", "rejections")

    created = by_day(ApprovalRequest.objects, "created_at").annotate(
        created=Count("pk"), escalated=Count("pk", filter=Q(escalated_at__isnull=False))
    )
    for row in created:
        yield row["agent_id"], row["day"], _figures(row, "created", "escalated")

    # Seconds, not a duration: Django's duration arithmetic does not work on SQLite.
    waited = EpochSeconds("decided_at") - EpochSeconds("escalated_at")
    escalated = Q(escalated_at__isnull=False)
    decided = by_day(
        ApprovalRequest.objects.filter(
            decided_by__isnull=False, status__in=[Status.APPROVED, Status.REJECTED]
        ),
        "decided_at",
    ).annotate(
        decided=Count("pk"),
        changes=Count("pk", filter=Q(modified_params__isnull=False)),
        overridden=Count("pk", filter=Q(status=Status.REJECTED) | Q(modified_params__isnull=False)),
        resolved=Count("pk", filter=escalated),
        waited=Sum(waited, filter=escalated),
    )
    for row in decided:
        values = _figures(row, "decided", "changes", "overridden", "resolved")
        values["resolution_seconds"] = float(row["waited"] or 0.0)
        yield row["agent_id"], row["day"], values

    events = AuditEvent.objects.filter(event_type=EventType.AUTONOMY_CHANGED, subject_type="agent")
    if agent_ids is not None:
        events = events.filter(subject_id__in=[str(pk) for pk in agent_ids])
    transitions = (
        events.filter(occurred_at__gte=since, occurred_at__lt=until)
        .annotate(day=TruncDate("occurred_at", tzinfo=UTC))
        .values("subject_id", "day")
        .annotate(transitions=Count("pk"))
    )
    for row in transitions:
        yield int(row["subject_id"]), row["day"], {"transitions": row["transitions"]}


def _figures(row: dict[str, int], *names: str) -> dict[str, float]:
    return {name: row[name] for name in names}
