"""Autonomy recommendations (SPEC §6): what the agent's record says about its level.

The record is the agent's outcomes and the requests people decided, since its level last
changed and over 30 days at most: a change starts a fresh record, so a lowering is not applied
again on the evidence that caused it, and a trial is judged on what happened during it.

- **Raise** one level: success rate > 95 % and override rate (rejected or changed, of decided)
  < 5 % and no critical failure, over at least 50 outcomes. A manager applies it (one click); it
  is a 30-day trial that reverts by itself if a lowering condition appears meanwhile.
- **Lower** one level: success rate < 85 %, override rate > 20 % or any critical failure (an
  execution mismatch, a critical violation, a failed outcome of a critical action). Applied at
  once, automatically, the managers told; a manager may restore the level it replaced. A rate
  lowers only over at least OVERSIGHT_AUTONOMY_MIN_EVIDENCE outcomes (or decided requests), so
  one early failure after a change does not lower again; a critical failure always does.

`refresh` computes every agent's recommendation in five grouped queries and is run by beat,
never on a check's path. (A raise also needs no critical failure in the whole 30 days.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from agents.models import MAX_AUTONOMY, Agent, AgentStatus
from approvals.models import ApprovalRequest, RiskLevel, Status
from controls.models import AutonomyRecommendation, Direction, Outcome
from guardrails.models import Violation

WINDOW = timedelta(days=30)
TRIAL = timedelta(days=30)
RAISE_MIN_OUTCOMES = 50
RAISE_SUCCESS = 0.95
RAISE_OVERRIDE = 0.05
LOWER_SUCCESS = 0.85
LOWER_OVERRIDE = 0.20


@dataclass(frozen=True)
class Evidence:
    outcomes: int = 0
    successes: int = 0
    decided: int = 0
    overridden: int = 0
    critical_failures: int = 0
    # Over the whole 30 days, the level's changes aside: a raise needs none (a lowering looks at
    # the record since the change only, so that one failure does not lower twice).
    critical_in_window: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.outcomes if self.outcomes else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.decided if self.decided else None


def recommend(level: int, evidence: Evidence, *, min_evidence: int = 1) -> tuple[str, list[str]]:
    """The direction for an agent at overall `level`, and the reasons, each with its counts."""
    lowering = lowering_reasons(evidence, min_evidence=min_evidence)
    if lowering:
        return (Direction.LOWER if level > 0 else Direction.KEEP), lowering
    success, override = evidence.success_rate, evidence.override_rate
    missing = []
    if evidence.outcomes < RAISE_MIN_OUTCOMES:
        missing.append(
            f"{evidence.outcomes} outcomes so far; a raise weighs at least {RAISE_MIN_OUTCOMES}."
        )
    elif success is None or success <= RAISE_SUCCESS:
        missing.append(f"Success rate {_pct(success)} is not above {_pct(RAISE_SUCCESS)}.")
    if override is not None and override >= RAISE_OVERRIDE:
        missing.append(f"Override rate {_pct(override)} is not below {_pct(RAISE_OVERRIDE)}.")
    if evidence.critical_in_window:
        missing.append(
            f"{evidence.critical_in_window} critical failure(s) within 30 days: no raise until "
            "they are older."
        )
    if missing:
        return Direction.KEEP, missing
    if level >= MAX_AUTONOMY:
        return Direction.KEEP, ["The record would support a raise; the agent is at level 5."]
    return Direction.RAISE, [
        f"Success rate {_pct(success)} over {evidence.outcomes} outcomes (above "
        f"{_pct(RAISE_SUCCESS)}); override rate {_pct(override or 0.0)} of {evidence.decided} "
        f"decided requests (below {_pct(RAISE_OVERRIDE)}); no critical failure in 30 days."
    ]


def lowering_reasons(evidence: Evidence, *, min_evidence: int = 1) -> list[str]:
    reasons = []
    if evidence.critical_failures:
        reasons.append(f"{evidence.critical_failures} critical failure(s).")
    success, override = evidence.success_rate, evidence.override_rate
    if success is not None and evidence.outcomes >= min_evidence and success < LOWER_SUCCESS:
        reasons.append(
            f"Success rate {_pct(success)} over {evidence.outcomes} outcomes is below "
            f"{_pct(LOWER_SUCCESS)}."
        )
    if override is not None and evidence.decided >= min_evidence and override > LOWER_OVERRIDE:
        reasons.append(
            f"Override rate {_pct(override)} of {evidence.decided} decided requests is above "
            f"{_pct(LOWER_OVERRIDE)}."
        )
    return reasons


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.1f} %".replace(".0 %", " %")


def since(agent: Agent, now: datetime) -> datetime:
    start = now - WINDOW
    changed = agent.autonomy_changed_at
    return max(start, changed) if changed else start


def evidence(now: datetime, agent_ids: list[int] | None = None) -> dict[int, Evidence]:
    """Every agent's record since its level last changed (30 days at most), by agent id."""
    start = now - WINDOW
    after_change = Coalesce(F("agent__autonomy_changed_at"), start)
    scope = Q(agent_id__in=agent_ids) if agent_ids is not None else Q()
    counts: dict[int, dict[str, int]] = {}
    outcomes = Outcome.objects.filter(scope, created_at__gte=start).filter(
        created_at__gte=after_change
    )
    for row in outcomes.values("agent_id").annotate(
        outcomes=Count("pk"),
        successes=Count("pk", filter=Q(success=True)),
        critical=Count("pk", filter=Q(critical=True)),
    ):
        counts.setdefault(row["agent_id"], {}).update(
            outcomes=row["outcomes"], successes=row["successes"], critical=row["critical"]
        )
    decided = (
        ApprovalRequest.objects.filter(
            scope,
            decided_by__isnull=False,
            status__in=[Status.APPROVED, Status.REJECTED],
            decided_at__gte=start,
        )
        .filter(decided_at__gte=after_change)
        .values("agent_id")
        .annotate(
            decided=Count("pk"),
            overridden=Count(
                "pk", filter=Q(status=Status.REJECTED) | Q(modified_params__isnull=False)
            ),
        )
    )
    for judged in decided:
        counts.setdefault(judged["agent_id"], {}).update(
            decided=judged["decided"], overridden=judged["overridden"]
        )
    violations = (
        Violation.objects.filter(scope, severity=RiskLevel.CRITICAL, created_at__gte=start)
        .filter(created_at__gte=after_change)
        .values("agent_id")
        .annotate(critical=Count("pk"))
    )
    for refused in violations:
        counts.setdefault(refused["agent_id"], {})["violations"] = refused["critical"]
    window_outcomes = (
        Outcome.objects.filter(scope, created_at__gte=start, critical=True)
        .values("agent_id")
        .annotate(critical=Count("pk"))
    )
    window_violations = (
        Violation.objects.filter(scope, severity=RiskLevel.CRITICAL, created_at__gte=start)
        .values("agent_id")
        .annotate(critical=Count("pk"))
    )
    for failed in (*window_outcomes, *window_violations):
        entry = counts.setdefault(failed["agent_id"], {})
        entry["window"] = entry.get("window", 0) + failed["critical"]
    return {
        agent_id: Evidence(
            outcomes=entry.get("outcomes", 0),
            successes=entry.get("successes", 0),
            decided=entry.get("decided", 0),
            overridden=entry.get("overridden", 0),
            critical_failures=entry.get("critical", 0) + entry.get("violations", 0),
            critical_in_window=entry.get("window", 0),
        )
        for agent_id, entry in counts.items()
    }


def refresh(now: datetime | None = None) -> list[AutonomyRecommendation]:
    """Recompute every agent's recommendation and store it; end the trials that passed. Returns
    the recommendations to lower (the caller, `controls.services.refresh_autonomy`, applies
    them)."""
    now = now or timezone.now()
    agents = list(Agent.objects.exclude(status=AgentStatus.DISABLED))
    found = evidence(now, [agent.pk for agent in agents])
    lowering = []
    for agent in agents:
        record = found.get(agent.pk, Evidence())
        level = agent.overall_autonomy
        direction, reasons = recommend(
            level, record, min_evidence=settings.OVERSIGHT_AUTONOMY_MIN_EVIDENCE
        )
        recommendation, _ = AutonomyRecommendation.objects.update_or_create(
            agent=agent,
            defaults={
                "computed_at": now,
                "since": since(agent, now),
                "level": level,
                "direction": direction,
                "reasons": reasons,
                "outcomes": record.outcomes,
                "successes": record.successes,
                "decided": record.decided,
                "overridden": record.overridden,
                "critical_failures": record.critical_failures,
            },
        )
        if direction == Direction.LOWER:
            lowering.append(recommendation)
    return lowering
