"""Agent health per day (SPEC §12): each figure from a data set built on each side of its
threshold, grouped in SQL with a query count that does not grow with the data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services as approvals
from approvals.models import ApprovalRequest, Vote
from controls import services as controls
from controls.models import Outcome
from guardrails.models import Violation
from monitoring import health
from monitoring.views import METRICS
from tests.monitoring.test_alerts import spend

pytestmark = pytest.mark.django_db

TODAY = date(2026, 12, 7)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def outcome(agent, day: date, *, success: bool = True, error: str = "") -> None:
    Outcome.objects.create(
        agent=agent, action="deploy", params_sha256="0" * 64, success=success, error=error,
        created_at=at(day),
    )  # fmt: skip


def spec(key: str):
    return next(metric for metric in METRICS if metric.key == key)


def test_success_and_error_rates_per_day_at_their_thresholds(make_agent):
    agent = make_agent().agent
    yesterday = TODAY - timedelta(days=1)
    for n in range(20):  # 18 of 20 succeed: 90 %, not above 90 %
        outcome(agent, yesterday, success=n < 18, error="boom" if n == 19 else "")
    for n in range(20):  # 19 of 20: 95 %; one failure without an error is not an error
        outcome(agent, TODAY, success=n < 19)

    measured = health.health(TODAY, 2, agent_ids=[agent.pk])

    first, second = measured.by_agent[agent.pk]
    assert (first.success_rate, first.error_rate) == (0.9, 0.05)
    assert (second.success_rate, second.error_rate) == (0.95, 0.0)
    assert spec("success").breached(first.success_rate) is False  # 90 % is not below 90 %
    assert spec("success").breached(0.899) is True
    assert spec("errors").breached(first.error_rate) is False  # 5 % is not above 5 %
    assert spec("errors").breached(0.051) is True
    assert measured.total.outcomes == 40


def test_cost_per_task_against_the_14_day_baseline(make_agent):
    agent = make_agent().agent
    for back in range(1, 15):  # 14 days before today: one task a day at 10 cents
        outcome(agent, TODAY - timedelta(days=back))
        spend(agent, "10", at(TODAY - timedelta(days=back)))
    outcome(agent, TODAY)
    spend(agent, "11.5", at(TODAY))

    (day,) = health.health(TODAY, 1, agent_ids=[agent.pk]).overall

    assert day.baseline_cost_per_task == 10.0
    assert day.cost_per_task == 11.5
    assert day.cost_drift == pytest.approx(0.15)
    assert spec("cost").breached(day.cost_drift) is True
    assert spec("cost").breached(0.10) is False
    assert spec("cost").breached(-0.11) is True


def test_violations_interventions_escalations_overrides_and_transitions(
    make_agent, new_request, approvers
):
    agent = make_agent().agent
    Violation.objects.bulk_create(
        Violation(
            agent=agent, action="x", code="forbidden_pattern", severity="high", message="m",
            params_sha256="0" * 64, purpose="check", created_at=at(TODAY),
        )
        for _ in range(5)
    )  # fmt: skip
    requests = [new_request(agent=agent, params={"n": n}) for n in range(4)]
    approvals.approve_request(request_id=requests[0].pk, reviewer=approvers["lead"])
    approvals.reject_request(request_id=requests[1].pk, reviewer=approvers["lead"], reason="no")
    ApprovalRequest.objects.filter(pk=requests[2].pk).update(escalated_at=at(TODAY, 10))
    controls.set_autonomy(agent=agent, level=3, why="test")
    ApprovalRequest.objects.filter(agent=agent).update(created_at=at(TODAY, 9))
    ApprovalRequest.objects.filter(agent=agent, decided_at__isnull=False).update(
        decided_at=at(TODAY, 11)
    )
    ApprovalRequest.objects.filter(pk=requests[1].pk).update(escalated_at=at(TODAY, 10))
    Vote.objects.filter(request__agent=agent).update(created_at=at(TODAY, 11))

    (day,) = health.health(TODAY, 1, agent_ids=[agent.pk]).overall

    assert day.violations == 5
    assert spec("violations").breached(5)
    assert not spec("violations").breached(4)
    assert (day.approvals, day.rejections, day.interventions) == (1, 1, 2)
    assert (day.created, day.escalated, day.escalation_rate) == (4, 2, 0.5)
    assert spec("escalations").breached(0.5)
    assert not spec("escalations").breached(0.3)
    assert (day.decided, day.overridden, day.override_rate) == (2, 1, 0.5)
    assert day.resolved == 1
    assert day.resolution_time == pytest.approx(3600.0, abs=0.01)  # SQLite: julianday


def test_autonomy_transitions_are_counted_per_day(make_agent):
    agent = make_agent().agent
    controls.set_autonomy(agent=agent, level=3, why="test")
    controls.set_autonomy(agent=agent, level=1, why="test")
    today = datetime.now(UTC).date()

    (day,) = health.health(today, 1, agent_ids=[agent.pk]).overall

    assert day.transitions == 2


def test_the_query_count_does_not_grow_with_the_data(make_agent):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            health.health(TODAY, 30)
        return len(captured)

    small = queries()
    for n in range(5):
        agent = make_agent().agent
        for back in range(10):
            outcome(agent, TODAY - timedelta(days=back))
            spend(agent, str(Decimal(n + 1)), at(TODAY - timedelta(days=back)))
    assert queries() == small == 9
