"""A budget in ask mode (SPEC §5): past its limit a person decides instead of a refusal, and
approving such a request raises the cap for the current period."""

from __future__ import annotations

import functools
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from approvals import selectors as approval_selectors
from approvals import services as approvals
from approvals.models import ApprovalRequest, Status
from audit.models import AuditEvent
from budgets import selectors
from budgets.models import Budget, BudgetWindow, Mode, Reservation
from guardrails import services as guardrails
from tests.budgets.helpers import report, run_in_waves
from tests.budgets.test_admission import ASK, REFUSED, ask

READ = {"action": ASK["action"], "params": ASK["params"]}  # the call the requests below ask for


def check(agent, estimate=None, **extra):
    fields = {**READ, **extra}
    return guardrails.check_action(agent=agent, estimated_cost_cents=estimate, **fields)


def used_up(make_agent, make_budget, *, limit=3, mode=Mode.ASK):
    """An agent whose daily budget in `mode` is spent to its limit (3 ¢)."""
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=limit, mode=mode)
    report(agent)  # 3 ¢
    return agent, budget


@pytest.mark.django_db
def test_within_the_limit_an_ask_budget_changes_nothing(make_agent, make_budget):
    agent = make_agent().agent
    make_budget(agent=agent, limit_cents=1000, mode=Mode.ASK)
    outcome = check(agent, 10)
    assert outcome.decision == "allow", outcome.as_json()


@pytest.mark.django_db
def test_past_the_limit_the_check_asks_a_person_instead_of_refusing(make_agent, make_budget):
    agent, _ = used_up(make_agent, make_budget)
    outcome = check(agent)
    assert outcome.decision == "require_approval"
    (reason,) = [r for r in outcome.verdict.reasons if r.code == "budget_exceeded"]
    assert reason.effect == "require_approval"
    assert "asks a person" in reason.message
    assert outcome.violation_id is None  # not a refusal: nothing is recorded as a violation


@pytest.mark.django_db
def test_an_estimate_past_what_is_left_asks_too(make_agent, make_budget):
    agent = make_agent().agent
    make_budget(agent=agent, limit_cents=10, mode=Mode.ASK)
    report(agent)  # 3 of 10 ¢
    assert check(agent, 7).decision == "allow"
    asked = check(agent, 8)
    assert asked.decision == "require_approval"
    assert "budget_exceeded" in asked.verdict.codes


@pytest.mark.django_db
def test_a_later_deny_still_wins_over_the_budgets_question(make_agent, make_budget):
    agent, _ = used_up(make_agent, make_budget)
    outcome = check(agent, params={"path": "/app/.env"})
    assert outcome.decision == "deny"
    assert "budget_exceeded" in outcome.verdict.codes


@pytest.mark.django_db
def test_an_enforced_budget_still_refuses(make_agent, make_budget):
    agent, _ = used_up(make_agent, make_budget, mode=Mode.ENFORCE)
    outcome = check(agent)
    assert outcome.decision == "deny"
    assert outcome.verdict.deciding.code == "budget_exceeded"
    with pytest.raises(REFUSED) as refused:
        ask(agent)
    assert refused.value.code == "budget_exceeded"


@pytest.mark.django_db
def test_an_alert_only_budget_neither_refuses_nor_asks(make_agent, make_budget):
    agent, _ = used_up(make_agent, make_budget, mode=Mode.ALERT_ONLY)
    assert check(agent).decision == "allow"


@pytest.mark.django_db
def test_the_request_past_the_limit_reaches_the_inbox_and_its_approval_lets_the_next_check_through(
    make_agent, make_budget, approvers
):
    agent, budget = used_up(make_agent, make_budget)
    assert check(agent, 5).decision == "require_approval"
    request = ask(agent, 5)
    assert request.status == Status.PENDING
    assert "budget_exceeded" in [r["code"] for r in request.check_reasons]
    assert not Reservation.objects.exists()  # it did not fit: nothing held, a person decides
    lead = approvers["lead"]
    assert approval_selectors.decidable_by(lead).filter(pk=request.pk).exists()

    outcome = approvals.approve_request(request_id=request.pk, reviewer=lead)
    assert outcome.decided
    window = BudgetWindow.objects.get(budget=budget)
    assert window.raised_cents == Decimal(5)
    assert window.reserved_cents == Decimal(5)  # held for the approved request
    (state,) = selectors.agent_states(agent)
    assert state.limit_cents == Decimal(8)
    raised = AuditEvent.objects.get(event_type="budget.raised")
    assert raised.actor_name == lead.display_name
    assert Decimal(raised.payload["amount_cents"]) == 5
    assert raised.payload["request"] == str(request.pk)
    # The agent's next check of what was approved goes through, on the room its approval made.
    assert check(agent, 5).decision == "allow"
    assert check(agent, 6).decision == "require_approval"  # the raise was for 5 ¢


@pytest.mark.django_db
def test_the_room_an_approval_made_is_the_approved_calls_not_the_next_ones(
    make_agent, make_budget, approvers
):
    agent, budget = used_up(make_agent, make_budget)
    request = ask(agent, 5)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    other = check(agent, 5, params={"path": "/srv/reports/q4.csv"})
    assert other.decision == "require_approval", "a call nobody approved may not spend it"
    assert "budget_exceeded" in other.verdict.codes
    report(agent, task_id=str(request.pk), input_tokens=1000)  # the approved work: 3 ¢
    window = BudgetWindow.objects.get(budget=budget)
    assert window.reserved_cents == 0  # its cost report claimed the hold


@pytest.mark.django_db
def test_each_approval_past_the_limit_raises_the_cap_by_its_own_estimate(
    make_agent, make_budget, approvers
):
    agent, budget = used_up(make_agent, make_budget)
    first, second = ask(agent, 5), ask(agent, 7)
    for request in (first, second):
        approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    window = BudgetWindow.objects.get(budget=budget)
    assert window.raised_cents == Decimal(12)
    assert window.reserved_cents == Decimal(12)
    assert AuditEvent.objects.filter(event_type="budget.raised").count() == 2


@pytest.mark.django_db
def test_without_an_estimate_an_approval_raises_the_cap_by_a_tenth_of_the_limit(
    make_agent, make_budget, approvers
):
    agent, budget = used_up(make_agent, make_budget, limit=3)
    request = ask(agent)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert BudgetWindow.objects.get(budget=budget).raised_cents == Decimal("0.3")
    assert check(agent).decision == "allow"


@pytest.mark.django_db
def test_rejecting_raises_nothing(make_agent, make_budget, approvers):
    agent, budget = used_up(make_agent, make_budget)
    request = ask(agent, 5)
    approvals.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="No.")
    assert BudgetWindow.objects.get(budget=budget).raised_cents == 0
    assert not AuditEvent.objects.filter(event_type="budget.raised").exists()
    assert check(agent).decision == "require_approval"


@pytest.mark.django_db
def test_approving_a_request_that_did_not_ask_for_budget_raises_nothing(
    make_agent, make_budget, approvers
):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=10, mode=Mode.ASK)
    request = ask(agent, 5)  # fits: held, not asked for
    assert "budget_exceeded" not in [r["code"] for r in request.check_reasons]
    report(agent, input_tokens=3000)  # 9 ¢ spent meanwhile: the budget is past its limit now
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert BudgetWindow.objects.get(budget=budget).raised_cents == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_past_an_ask_budget_are_all_admitted_for_a_person(
    make_agent, make_budget
):
    agent = make_agent().agent
    budget = make_budget(agent=agent, limit_cents=1000, mode=Mode.ASK)
    report(agent, input_tokens=300_000)  # 900 ¢: room for ten 10 ¢ estimates
    results = run_in_waves([functools.partial(ask, agent, 10) for _ in range(30)])
    assert all(isinstance(r, ApprovalRequest) for r in results), results
    asked = [r for r in results if "budget_exceeded" in [c["code"] for c in r.check_reasons]]
    assert len(asked) == 20
    window = BudgetWindow.objects.get(budget=budget)
    assert window.reserved_cents == 100  # only the ten that fit hold their estimate
    assert Reservation.objects.count() == 10


@pytest.mark.django_db
def test_the_agent_sees_the_mode_and_whether_its_budget_asks(make_agent, make_budget, api):
    made = make_agent()
    make_budget(agent=made.agent, limit_cents=3, mode=Mode.ASK)
    report(made.agent)
    body = api(made.key).get("/api/v1/agents/me").json()
    (state,) = body["budgets"]
    assert state["mode"] == "ask"
    assert state["asks_a_person"] is True
    assert state["blocks_new_requests"] is False
    assert state["raised_cents"] == "0.00000000"


@pytest.mark.django_db
def test_set_budget_takes_a_mode(make_agent):
    made = make_agent("ask-bot")
    out = StringIO()
    call_command(
        "set_budget", "--agent", "ask-bot", "--period", "daily", "--limit-cents", "500",
        "--mode", "ask", stdout=out,
    )  # fmt: skip
    assert Budget.objects.get(agent=made.agent).mode == Mode.ASK
    assert "(ask a person past the limit)" in out.getvalue()
    change = AuditEvent.objects.get(event_type="budget.changed")
    assert change.payload["to"]["mode"] == "ask"


def test_the_requests_asked_for_budget_are_known_by_their_reasons():
    asked = ApprovalRequest(check_reasons=[{"code": "budget_exceeded", "effect": "x"}])
    assert asked.asked_for_budget
    assert not ApprovalRequest(check_reasons=[{"code": "autonomy_level"}]).asked_for_budget
