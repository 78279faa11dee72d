"""`manage.py set_budget` (SPEC §11) and the budget service behind it and the admin."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from budgets.models import Budget

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("set_budget", *args, stdout=out)
    return out.getvalue()


def test_set_budget_creates_then_updates_one_budget_per_target_and_period(make_agent):
    make_agent("writer-bot")
    out = run("--agent", "writer-bot", "--period", "daily", "--limit-cents", "5000")
    assert out.strip() == (
        "Daily budget of agent writer-bot: limit 5000 cents, alerts at 80%, 95%, 100%."
    )
    run("--agent", "writer-bot", "--period", "daily", "--limit-cents", "7000", "--thresholds=50,90")
    budget = Budget.objects.get()
    assert (budget.limit_cents, budget.thresholds, budget.enforce) == (7000, [50, 90], True)
    run("--agent", "writer-bot", "--period", "weekly", "--limit-cents", "9000")
    run("--team", "platform", "--period", "monthly", "--limit-cents", "100000", "--alert-only")
    run("--global", "--period", "hourly", "--limit-cents", "1000")
    assert Budget.objects.count() == 4
    assert not Budget.objects.get(team="platform").enforce
    changes = AuditEvent.objects.filter(event_type="budget.changed").order_by("sequence")
    assert changes.count() == 5
    assert changes[1].payload["from"]["limit_cents"] == 5000
    assert changes[1].payload["to"]["limit_cents"] == 7000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "ghost", "--period", "daily", "--limit-cents", "1"], "No agent named"),
        (["--global", "--period", "daily", "--limit-cents", "0"], "limit_cents"),
        (["--global", "--period=daily", "--limit-cents=5", "--thresholds=0"], "thresholds"),
        (["--global", "--period=daily", "--limit-cents=5", "--thresholds=x"], "thresholds"),
    ],
)
def test_set_budget_refuses_bad_input_with_a_clear_message(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--period", "daily", "--limit-cents", "5"],  # no target
        ["--global", "--team", "x", "--period", "daily", "--limit-cents", "5"],  # two targets
        ["--global", "--period", "fortnightly", "--limit-cents", "5"],
    ],
)
def test_set_budget_needs_exactly_one_target_and_a_known_period(args):
    with pytest.raises(CommandError):
        run(*args)
