"""Reads: the budgets that apply to an agent, their current state, and the spending analytics
of the budgets page.

Budgets change rarely and every cost report and every approval request of an agent with a
budget needs them, so each process keeps them for a few seconds (like the escalation routes):
an agent without any applicable budget costs no query at all on the hot path. A change made in
this process applies at once (`forget_budgets` on commit); other processes follow within
`BUDGET_CACHE_SECONDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import Agent
from budgets import periods, pricing
from budgets.models import Alert, Budget, BudgetWindow, CostRecord, Mode, Scope
from oversight.cache import TimedCache

BUDGET_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Rule:
    """What the hot path needs to know about a budget."""

    id: int
    scope: str
    period: str
    limit_cents: int
    thresholds: tuple[int, ...]
    mode: str
    label: str

    @property
    def enforce(self) -> bool:
        return self.mode == Mode.ENFORCE

    @property
    def ask(self) -> bool:
        return self.mode == Mode.ASK

    def window(self, at: datetime) -> periods.Window:
        return periods.window_for(self.period, at)


@dataclass(frozen=True)
class _Index:
    everything: tuple[Rule, ...]
    by_team: dict[str, tuple[Rule, ...]]
    by_agent: dict[int, tuple[Rule, ...]]


def rule_of(budget: Budget) -> Rule:
    return Rule(
        id=budget.pk,
        scope=budget.scope,
        period=budget.period,
        limit_cents=budget.limit_cents,
        thresholds=tuple(sorted(budget.thresholds)),
        mode=budget.mode,
        label=str(budget),
    )


def _load_index() -> _Index:
    everything: list[Rule] = []
    by_team: dict[str, list[Rule]] = {}
    by_agent: dict[int, list[Rule]] = {}
    for budget in Budget.objects.select_related("agent").order_by("pk"):
        rule = rule_of(budget)
        if budget.scope == Scope.GLOBAL:
            everything.append(rule)
        elif budget.scope == Scope.TEAM:
            by_team.setdefault(budget.team, []).append(rule)
        elif budget.agent_id is not None:
            by_agent.setdefault(budget.agent_id, []).append(rule)
    return _Index(
        tuple(everything),
        {team: tuple(rules) for team, rules in by_team.items()},
        {agent_id: tuple(rules) for agent_id, rules in by_agent.items()},
    )


_index = TimedCache(BUDGET_CACHE_SECONDS, _load_index)


def rules_for(agent: Agent) -> tuple[Rule, ...]:
    """The budgets that apply to `agent` (its own, its team's, everything's), by id."""
    index = _index.get()
    found = (
        index.everything
        + (index.by_team.get(agent.team, ()) if agent.team else ())
        + index.by_agent.get(agent.pk, ())
    )
    # Always the same order, so transactions lock window rows in the same order (no deadlock).
    return tuple(sorted(found, key=lambda rule: rule.id))


def forget_budgets() -> None:
    """Drop this process's cached budgets (after a change, and in tests)."""
    _index.forget()


# --- state of a budget in its current window ---------------------------------------------------


@dataclass(frozen=True)
class BudgetState:
    rule: Rule
    window: periods.Window
    spent_cents: Decimal
    reserved_cents: Decimal
    raised_cents: Decimal = Decimal(0)  # what approvals added to this window's cap (ask mode)

    @property
    def limit_cents(self) -> Decimal:
        """The limit in force in this window: the budget's, plus what approvals raised it by."""
        return self.rule.limit_cents + self.raised_cents

    @property
    def left_cents(self) -> Decimal:
        return self.limit_cents - self.spent_cents - self.reserved_cents

    @property
    def percent(self) -> float:
        return float(self.spent_cents * 100 / self.rule.limit_cents)

    @property
    def exhausted(self) -> bool:
        """At or past the limit, counting admitted estimates not yet reconciled."""
        return self.spent_cents + self.reserved_cents >= self.limit_cents

    @property
    def blocking(self) -> bool:
        return self.rule.enforce and self.exhausted

    @property
    def asking(self) -> bool:
        return self.rule.ask and self.exhausted

    @property
    def status(self) -> str:
        if self.spent_cents >= self.limit_cents:
            return "exceeded"
        warn = [t for t in self.rule.thresholds if t < 100]
        if warn and self.percent >= warn[0]:
            return "warning"
        return "ok"

    def explain(self) -> str:
        return (
            f"The {self.rule.label} is used up: {self.spent_cents:.2f}¢ spent"
            + (f" and {self.reserved_cents:.2f}¢ reserved" if self.reserved_cents else "")
            + f" of {self.rule.limit_cents}¢"
            + (f" (raised to {self.limit_cents:.2f}¢ by approvals)" if self.raised_cents else "")
            + " this period; it resets at "
            f"{self.window.end.isoformat()}."
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.rule.id,
            "scope": self.rule.scope,
            "name": self.rule.label,
            "period": self.rule.period,
            "limit_cents": self.rule.limit_cents,
            "raised_cents": money(self.raised_cents),
            "spent_cents": money(self.spent_cents),
            "reserved_cents": money(self.reserved_cents),
            "percent_used": round(self.percent, 2),
            "window_start": self.window.start.isoformat(),
            "window_end": self.window.end.isoformat(),
            "status": self.status,
            "mode": self.rule.mode,
            "enforced": self.rule.enforce,
            "blocks_new_requests": self.blocking,
            "asks_a_person": self.asking,
        }


def money(value: Decimal) -> str:
    """Cents as the API writes them: a fixed-point decimal string ("0.05253000")."""
    return format(value.quantize(pricing.QUANTUM), "f")


def dollars(cents: Decimal | int) -> str:
    """Cents as people read them: $1,234.56, small amounts with 4 places ($0.0005). Decimal
    arithmetic, so a large or awkward amount is never rounded through a binary float."""
    value = Decimal(cents) / 100
    if value and abs(value) < Decimal("0.01"):
        return f"${value:,.4f}"
    return f"${value:,.2f}"


def states(rules: tuple[Rule, ...] | list[Rule], at: datetime | None = None) -> list[BudgetState]:
    """Each rule's state in the window containing `at` (now), in one query."""
    if not rules:
        return []
    at = at or timezone.now()
    windows = {rule.id: rule.window(at) for rule in rules}
    wanted = Q()
    for rule_id, window in windows.items():
        wanted |= Q(budget_id=rule_id, window_start=window.start)
    rows = {
        budget_id: (spent, reserved, raised)
        for budget_id, spent, reserved, raised in BudgetWindow.objects.filter(wanted).values_list(
            "budget_id", "spent_cents", "reserved_cents", "raised_cents"
        )
    }
    zero = (Decimal(0),) * 3
    return [BudgetState(rule, windows[rule.id], *rows.get(rule.id, zero)) for rule in rules]


def agent_states(agent: Agent) -> list[BudgetState]:
    return states(rules_for(agent))


# --- analytics for the budgets page ---------------------------------------------------------------


@dataclass(frozen=True)
class BudgetRow:
    budget: Budget
    state: BudgetState
    burn_cents_per_hour: Decimal
    projected_cents: Decimal

    @property
    def projected_percent(self) -> float:
        return float(self.projected_cents * 100 / self.budget.limit_cents)


def budget_rows(now: datetime | None = None) -> list[BudgetRow]:
    """Every budget with its spend in the current window, burn rate and projection to the end
    of that window (its own period), in two queries."""
    now = now or timezone.now()
    budgets = list(Budget.objects.select_related("agent").order_by("scope", "team", "pk"))
    result = []
    for budget, state in zip(budgets, states([rule_of(b) for b in budgets], now), strict=True):
        elapsed = max((now - state.window.start).total_seconds() / 3600, 1 / 60)
        burn = state.spent_cents / Decimal(str(elapsed))
        remaining = max((state.window.end - now).total_seconds() / 3600, 0)
        projected = state.spent_cents + burn * Decimal(str(remaining))
        result.append(BudgetRow(budget, state, burn, projected))
    return result


@dataclass(frozen=True)
class Spending:
    days: int
    total_cents: Decimal
    calls: int
    failed_cents: Decimal
    failed_calls: int
    last_24h_cents: Decimal
    unknown_calls: int
    by_agent: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_day: list[dict[str, Any]]

    @property
    def burn_cents_per_hour(self) -> Decimal:
        """The seed's hourly burn rate: the last 24 hours' spend over 24."""
        return self.last_24h_cents / 24


def spending(days: int = 30, now: datetime | None = None) -> Spending:
    """Spend over the last `days` days by agent, by model and by day (budget time zone)."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    recent = CostRecord.objects.filter(created_at__gte=since)
    totals = recent.aggregate(
        total=Sum("cost_cents", default=Decimal(0)),
        calls=Count("pk"),
        failed=Sum("cost_cents", filter=Q(success=False), default=Decimal(0)),
        failed_calls=Count("pk", filter=Q(success=False)),
        day=Sum("cost_cents", filter=Q(created_at__gte=now - timedelta(hours=24)), default=0),
        unknown=Count("pk", filter=Q(unknown_model=True)),
    )
    by_agent = list(
        recent.values("agent__name")
        .annotate(cents=Sum("cost_cents"), calls=Count("pk"))
        .order_by("-cents", "agent__name")
    )
    by_model = list(
        recent.values("model")
        .annotate(
            cents=Sum("cost_cents"),
            calls=Count("pk"),
            unknown=Count("pk", filter=Q(unknown_model=True)),
        )
        .order_by("-cents", "model")
    )
    by_day = list(
        recent.annotate(day=TruncDate("created_at", tzinfo=periods.budget_zone()))
        .values("day")
        .annotate(cents=Sum("cost_cents"), calls=Count("pk"))
        .order_by("day")
    )
    return Spending(
        days=days,
        total_cents=totals["total"],
        calls=totals["calls"],
        failed_cents=totals["failed"],
        failed_calls=totals["failed_calls"],
        last_24h_cents=Decimal(totals["day"]),
        unknown_calls=totals["unknown"],
        by_agent=[dict(row) for row in by_agent],
        by_model=[dict(row) for row in by_model],
        by_day=[dict(row) for row in by_day],
    )


def hints(spend: Spending) -> list[str]:
    """The seed's optimisation hints: expensive-model share, failed-call waste, high burn."""
    found = []
    if spend.total_cents > 0:
        expensive = pricing.expensive_models()
        rows = [row for row in spend.by_model if pricing.normalise(row["model"]) in expensive]
        share = sum((row["cents"] for row in rows), Decimal(0))
        if share > 1000:  # the seed: more than $10 on the expensive models
            found.append(
                f"Expensive models take {share * 100 / spend.total_cents:.0f}% of spend "
                f"(${share / 100:,.2f}). Use a cheaper model (e.g. gpt-4o-mini, claude-haiku) for "
                "simple tasks such as classification, log parsing and status checks."
            )
    if spend.calls and spend.failed_calls * 100 / spend.calls > 20:
        rate = 100 - spend.failed_calls * 100 / spend.calls
        found.append(
            f"Success rate is {rate:.0f}%: ${spend.failed_cents / 100:,.2f} spent on failed calls. "
            "Improve error handling to reduce the waste."
        )
    if spend.burn_cents_per_hour > 100:
        monthly = spend.burn_cents_per_hour * 24 * 30 / 100
        found.append(
            f"High burn rate: ${spend.burn_cents_per_hour / 100:,.2f}/hour "
            f"(${monthly:,.0f}/month projected). Consider caching or cheaper models."
        )
    return found


def recent_alerts(limit: int = 8) -> list[Alert]:
    return list(Alert.objects.select_related("budget", "budget__agent")[:limit])
