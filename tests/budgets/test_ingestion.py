"""Concurrent cost ingestion (SPEC §9.5): exact totals, and each alert exactly once."""

from __future__ import annotations

import functools
from decimal import Decimal

import pytest
from django.db.models import Sum

from audit.models import AuditEvent
from budgets.models import Alert, BudgetWindow, CostRecord
from tests.budgets.helpers import report, run_in_waves

pytestmark = pytest.mark.django_db(transaction=True)


def test_one_hundred_concurrent_reports_give_the_exact_total(make_agent, make_budget):
    agents = [make_agent().agent for _ in range(4)]
    budget = make_budget(period="daily", limit_cents=10**9)
    # 1234 input + 567 output tokens of gpt-4o-mini: 0.05253 ¢ each, awkward on purpose.
    calls = [functools.partial(report, agents[n % 4], "gpt-4o-mini", 1234, 567) for n in range(100)]
    results = run_in_waves(calls)
    assert not [r for r in results if isinstance(r, Exception)]
    each = Decimal("0.05253000")
    assert CostRecord.objects.count() == 100
    assert CostRecord.objects.aggregate(total=Sum("cost_cents"))["total"] == 100 * each
    window = BudgetWindow.objects.get(budget=budget)
    assert window.spent_cents == 100 * each
    assert window.calls == 100


def test_each_threshold_alert_fires_exactly_once_under_concurrency(make_agent, make_budget):
    agent = make_agent().agent
    # 100 calls of 3 ¢ against a 200 ¢ limit cross 80 %, 95 % and 100 % (and never 150 %: 300).
    budget = make_budget(
        agent=agent, period="daily", limit_cents=200, thresholds=[80, 95, 100, 200]
    )
    results = run_in_waves([functools.partial(report, agent) for _ in range(100)])
    assert not [r for r in results if isinstance(r, Exception)]
    assert BudgetWindow.objects.get(budget=budget).spent_cents == 300
    alerts = Alert.objects.filter(budget=budget, kind="threshold")
    assert sorted(alert.threshold or 0 for alert in alerts) == [80, 95, 100]
    assert AuditEvent.objects.filter(event_type="budget.alert").count() == 3


def test_alerts_fire_once_per_period_and_again_in_the_next(make_agent, make_budget):
    from datetime import UTC, datetime

    agent = make_agent().agent
    budget = make_budget(period="hourly", limit_cents=10)
    for hour in (9, 10):
        for minute in range(0, 50, 10):  # 5 calls x 3 ¢ = 15 ¢: past 100 % each hour
            report(agent, occurred_at=datetime(2026, 5, 6, hour, minute, tzinfo=UTC))
    alerts = Alert.objects.filter(budget=budget).order_by("window_start", "threshold")
    assert [(a.window_start.hour, a.threshold) for a in alerts] == [
        (9, 80),
        (9, 95),
        (9, 100),
        (10, 80),
        (10, 95),
        (10, 100),
    ]


def test_windows_written_by_the_ledger_are_found_by_the_orm(make_agent, make_budget):
    """The ledger writes with raw SQL; its datetimes must be the ORM's (SQLite keeps them as
    text, and a different spelling made the budgets page show $0 for a spent window)."""
    from datetime import UTC, datetime

    from budgets import periods

    agent = make_agent().agent
    budget = make_budget(period="hourly", limit_cents=10)
    at = datetime(2026, 5, 6, 9, 30, tzinfo=UTC)
    report(agent, occurred_at=at)
    window = periods.window_for("hourly", at)
    found = BudgetWindow.objects.get(budget=budget, window_start=window.start)
    assert found.spent_cents > 0
    assert found.window_end == window.end
