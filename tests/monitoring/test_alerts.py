"""The monitoring alerts (SPEC §12) on each side of the seed's thresholds: each fires once per
(metric, subject, window), also under concurrent evaluation, tells the managers (live, email,
audit) and resolves by itself when its condition clears."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from agents.models import Agent
from approvals.models import ApprovalRequest
from audit.events import EventType
from audit.models import AuditEvent
from budgets.models import Budget, BudgetWindow, CostRecord
from budgets.selectors import rule_of
from controls.models import Outcome
from guardrails.models import Violation
from monitoring import alerts
from monitoring.models import AlertState, Metric, MonitorAlert, MonitorAlertEmail

pytestmark = pytest.mark.django_db

# Noon UTC: "today" and "this hour" have room on both sides.
NOW = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)


def outcomes(agent: Agent, *, ok: int, failed: int, at: datetime = NOW) -> None:
    Outcome.objects.bulk_create(
        Outcome(
            agent=agent,
            action="deploy",
            params_sha256="0" * 64,
            success=n < ok,
            error="" if n < ok else "boom",
            created_at=at - timedelta(minutes=1),
        )
        for n in range(ok + failed)
    )


def spend(agent: Agent, cents: str, at: datetime) -> None:
    CostRecord.objects.create(
        agent=agent, model="m", input_tokens=1, output_tokens=1, cost_cents=Decimal(cents),
        created_at=at,
    )  # fmt: skip


def fired(metric: str) -> list[MonitorAlert]:
    return list(MonitorAlert.objects.filter(metric=metric))


@pytest.mark.parametrize(("ok", "failed", "fires"), [(8, 2, True), (9, 1, False), (0, 9, False)])
def test_success_rate_below_85_percent_today_over_ten_outcomes(make_agent, ok, failed, fires):
    agent = make_agent().agent
    outcomes(agent, ok=ok, failed=failed)

    alerts.evaluate(NOW)

    assert bool(fired(Metric.SUCCESS_RATE)) is fires


def test_an_alert_fires_once_tells_the_managers_and_resolves_when_the_rate_recovers(make_agent):
    agent = make_agent().agent
    outcomes(agent, ok=8, failed=2)

    assert alerts.evaluate(NOW)["fired"] == 1
    assert alerts.evaluate(NOW + timedelta(minutes=1))["fired"] == 0
    (alert,) = fired(Metric.SUCCESS_RATE)
    assert (alert.subject, alert.state, alert.evidence) == (
        agent.name,
        AlertState.FIRING,
        {"outcomes": 10, "successes": 8},
    )
    assert alert.window_start == datetime(2026, 12, 7, tzinfo=UTC)
    assert MonitorAlertEmail.objects.filter(alert=alert).count() == 1
    assert AuditEvent.objects.filter(event_type=EventType.MONITOR_ALERT_FIRED).count() == 1

    outcomes(agent, ok=10, failed=0)  # 18 of 20: 90 %
    assert alerts.evaluate(NOW + timedelta(minutes=2))["resolved"] == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert alert.resolved_at == NOW + timedelta(minutes=2)
    assert AuditEvent.objects.filter(event_type=EventType.MONITOR_ALERT_RESOLVED).count() == 1
    # Once per window: the same day going bad again does not fire a second time.
    outcomes(agent, ok=0, failed=10)
    assert alerts.evaluate(NOW + timedelta(minutes=3))["fired"] == 0


def test_yesterdays_alert_resolves_when_the_day_is_over(make_agent):
    agent = make_agent().agent
    outcomes(agent, ok=0, failed=10)
    alerts.evaluate(NOW)

    alerts.evaluate(NOW + timedelta(days=1))

    assert [a.state for a in fired(Metric.SUCCESS_RATE)] == [AlertState.RESOLVED]


@pytest.mark.parametrize(("cents", "fires"), [("2.01", True), ("2.00", False)])
def test_cost_spike_above_twice_the_normal_hourly_spend(make_agent, cents, fires):
    agent = make_agent().agent
    hour = NOW.replace(minute=0)
    # 1 cent in each of 14 hours of the 14 days before the last hour: 1 cent an hour is normal.
    for day in range(14):
        spend(agent, "1", hour - timedelta(hours=2) - timedelta(days=day))
    spend(agent, cents, hour + timedelta(minutes=5))

    alerts.evaluate(NOW)

    spikes = fired(Metric.COST_SPIKE)
    assert bool(spikes) is fires
    if fires:
        assert spikes[0].window_start == hour
        assert spikes[0].evidence == {"hour_cents": 2.01, "normal_hourly_cents": 1.0}


@pytest.mark.parametrize("hours", [0, alerts.MIN_HOURS - 1])
def test_no_cost_spike_without_a_normal_to_compare_with(make_agent, hours):
    agent = make_agent().agent
    for n in range(hours):
        spend(agent, "1", NOW - timedelta(days=1, hours=n))
    spend(agent, "500", NOW - timedelta(minutes=5))

    alerts.evaluate(NOW)

    assert fired(Metric.COST_SPIKE) == []


@pytest.mark.parametrize(("escalated", "fires"), [(4, True), (3, False)])
def test_escalation_rate_above_30_percent_of_todays_requests(
    make_agent, new_request, escalated, fires
):
    agent = make_agent().agent
    ids = [new_request(agent=agent, params={"n": n}).pk for n in range(10)]
    ApprovalRequest.objects.filter(pk__in=ids).update(created_at=NOW - timedelta(hours=1))
    ApprovalRequest.objects.filter(pk__in=ids[:escalated]).update(escalated_at=NOW)

    alerts.evaluate(NOW)

    assert bool(fired(Metric.ESCALATION_RATE)) is fires


def test_budget_exceeded_is_listed_and_audited_without_a_second_email(make_agent):
    agent = make_agent().agent
    budget = Budget.objects.create(scope="agent", agent=agent, period="daily", limit_cents=100)
    window = rule_of(budget).window(NOW)
    BudgetWindow.objects.create(
        budget=budget, window_start=window.start, window_end=window.end, spent_cents=Decimal(100)
    )

    alerts.evaluate(NOW)

    (alert,) = fired(Metric.BUDGET_EXCEEDED)
    assert alert.subject == f"budget:{budget.pk}"
    assert not MonitorAlertEmail.objects.exists()
    assert AuditEvent.objects.filter(event_type=EventType.MONITOR_ALERT_FIRED).count() == 1


@pytest.mark.parametrize(("count", "fires"), [(3, True), (2, False)])
def test_repeated_violations_in_an_hour(make_agent, count, fires):
    agent = make_agent().agent
    Violation.objects.bulk_create(
        Violation(
            agent=agent, action="x", code="forbidden_pattern", severity="high", message="m",
            params_sha256="0" * 64, purpose="check", created_at=NOW - timedelta(minutes=n + 1),
        )
        for n in range(count)
    )  # fmt: skip

    alerts.evaluate(NOW)

    assert bool(fired(Metric.REPEATED_VIOLATIONS)) is fires


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_fire_exactly_once(make_agent):
    agent = make_agent().agent
    outcomes(agent, ok=0, failed=10, at=timezone.now())
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            alerts.evaluate()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len(fired(Metric.SUCCESS_RATE)) == 1
    assert AuditEvent.objects.filter(event_type=EventType.MONITOR_ALERT_FIRED).count() == 1
    assert MonitorAlertEmail.objects.count() == 1
