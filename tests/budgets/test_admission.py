"""Enforcement: past a hard limit new approval requests are refused, conservatively under
concurrency; reservations are reconciled with actual costs."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services as approvals
from approvals.models import ApprovalRequest
from budgets import selectors
from budgets.models import Budget, BudgetWindow, Reservation
from tests.budgets.helpers import report, run_in_waves

# A policy without a rate limit (guardrails' seed), so only budgets refuse.
ASK: dict[str, Any] = {
    "action": "read_file",
    "params": {"path": "/srv/reports/q3.csv"},
    "risk_level": "medium",
    "justification": "Summarise the quarter.",
}
# Refused for budget: by the guardrails check before the create (read-only, which records a
# violation) or, under a race, by the create's own reservation of the estimate.
REFUSED = (approvals.BudgetRefused, approvals.GuardrailDenied)


def ask(agent, estimate=None):
    return approvals.create_request(agent=agent, estimated_cost_cents=estimate, **ASK)


def refusal(agent, estimate=None) -> approvals.ApprovalError:
    """Ask, expecting a refusal for budget."""
    with pytest.raises(REFUSED) as refused:
        ask(agent, estimate)
    assert refused.value.code == "budget_exceeded"
    return refused.value


def window_of(budget) -> BudgetWindow:
    return BudgetWindow.objects.get(budget=budget)


@pytest.mark.django_db(transaction=True)
def test_one_hundred_concurrent_admissions_never_pass_the_limit(make_agent, make_budget):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=1000)
    report(agent, input_tokens=300_000)  # 900 ¢ spent: room for ten 10 ¢ estimates
    results = run_in_waves([functools.partial(ask, agent, 10) for _ in range(100)])
    admitted = [r for r in results if isinstance(r, ApprovalRequest)]
    refused = [r for r in results if isinstance(r, REFUSED)]
    assert len(admitted) + len(refused) == 100, [r for r in results if isinstance(r, Exception)]
    window = window_of(budget)
    assert window.spent_cents + window.reserved_cents <= budget.limit_cents
    assert len(admitted) == 10
    assert window.reserved_cents == 100
    assert Reservation.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_admissions_without_estimates_stop_once_the_limit_is_spent(
    make_agent, make_budget
):
    agent = make_agent().agent
    make_budget(team="platform", limit_cents=3)
    agent.team = "platform"
    agent.save()
    results = run_in_waves([functools.partial(ask, agent) for _ in range(20)])
    assert all(isinstance(r, ApprovalRequest) for r in results)
    report(agent)  # 3 ¢: the limit is reached
    results = run_in_waves([functools.partial(ask, agent) for _ in range(20)])
    assert all(isinstance(r, REFUSED) for r in results)


@pytest.mark.django_db
def test_refusal_names_the_budget_and_when_it_resets(make_agent, make_budget):
    agent = make_agent().agent
    make_budget(period="hourly", limit_cents=3)
    report(agent)
    refused = refusal(agent)
    assert refused.code == "budget_exceeded"
    assert refused.status == 403
    assert "Hourly budget of everything is used up" in refused.message
    assert "resets at" in refused.message


@pytest.mark.django_db
def test_an_alert_only_budget_does_not_refuse(make_agent, make_budget):
    agent = make_agent().agent
    make_budget(agent=agent, limit_cents=3, mode="alert-only")
    report(agent)
    report(agent)
    assert ask(agent, 100).status == "pending"
    assert not Reservation.objects.exists()


@pytest.mark.django_db
def test_other_agents_budgets_do_not_apply(make_agent, make_budget):
    spender, other = make_agent().agent, make_agent().agent
    make_budget(agent=spender, limit_cents=3)
    report(spender)
    assert ask(other, 50).status == "pending"
    refusal(spender)


@pytest.mark.django_db
def test_an_agent_without_budgets_costs_the_create_no_budget_query(make_agent, make_budget):
    agent = make_agent("no-budget").agent
    make_budget(team="elsewhere", limit_cents=100)
    ask(agent, 10)  # warms the per-process budget cache
    with CaptureQueriesContext(connection) as queries:
        ask(agent, 10)
    assert not [q for q in queries.captured_queries if "budgets_" in q["sql"]]


@pytest.mark.django_db
@pytest.mark.parametrize("ending", ["reject", "cancel", "expire"])
def test_a_request_that_ends_without_approval_gives_its_reservation_back(
    make_agent, make_budget, approvers, ending
):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=100)
    request = ask(agent, 60)
    assert window_of(budget).reserved_cents == 60
    refusal(agent, 60)
    if ending == "reject":
        approvals.reject_request(request_id=request.pk, reviewer=approvers["em"], reason="no")
    elif ending == "cancel":
        approvals.cancel_request(request_id=request.pk, agent=agent)
    else:
        from tests.conftest import shift_into_past

        shift_into_past(request.pk, 5 * 3600)
        assert approvals.expire_request(request_id=request.pk)
    assert window_of(budget).reserved_cents == 0
    assert ask(agent, 60).status == "pending"


@pytest.mark.django_db
def test_the_actual_cost_replaces_the_estimate_once(make_agent, make_budget, approvers):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=100)
    request = ask(agent, 60)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["em"])
    assert window_of(budget).reserved_cents == 60  # approved: the work is about to happen
    report(agent, task_id=str(request.pk))
    report(agent, task_id=str(request.pk))
    window = window_of(budget)
    assert (window.spent_cents, window.reserved_cents) == (Decimal(6), Decimal(0))
    assert Reservation.objects.get().released_at is not None


@pytest.mark.django_db
def test_another_agents_task_id_does_not_release_a_reservation(make_agent, make_budget):
    owner, other = make_agent().agent, make_agent().agent
    budget = make_budget(agent=owner, limit_cents=100)
    request = ask(owner, 60)
    report(other, task_id=str(request.pk))
    assert window_of(budget).reserved_cents == 60


@pytest.mark.django_db
def test_cost_reports_are_recorded_past_the_limit(make_agent, make_budget):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=3)
    for _ in range(3):
        report(agent)
    assert window_of(budget).spent_cents == 9


@pytest.mark.django_db
def test_a_budget_deleted_while_another_process_caches_it_is_skipped(make_agent, make_budget):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=3)
    report(agent)
    assert selectors.rules_for(agent)  # cached, as another web process would have it
    Budget.objects.filter(pk=budget.pk).delete()  # behind this process's back
    assert ask(agent, 10).status == "pending"
    assert report(agent).budgets == []
