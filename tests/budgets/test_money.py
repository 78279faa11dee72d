"""Money is exact wherever it is written (SPEC §5): Decimal cents from the price to the budget
window, the API, the alert and its audit event, on PostgreSQL and on the embedded SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from budgets import services
from budgets.models import ModelPrice
from guardrails import services as guardrails
from tests.budgets.helpers import report
from tests.budgets.tenths import alert_at_120_9_cents

BASE_DIR = Path(__file__).resolve().parents[2]
# What the API writes for 120.9 ¢ (a fixed-point string, `budgets.selectors.money`); the audit
# event's details say the same.
EXACT = {
    "audit": "120.90000000",
    "api": "120.90000000",
    "window": "120.90000000",
    "message": "Daily budget of agent tenths reached 80%: $1.21 of $1.51",
}


def words(spent: dict[str, str]) -> dict[str, str]:
    return {**spent, "message": spent["message"].split(" (period")[0]}


@pytest.mark.django_db
def test_an_alerts_audit_details_carry_the_spend_as_the_api_writes_it():
    assert words(alert_at_120_9_cents()) == EXACT


@pytest.mark.slow
def test_on_sqlite_the_spend_stays_exact_too(tmp_path):
    """SQLite keeps decimals as binary floats, and the ledger's `spent + cost` added them as
    such: the alert's audit event said "120.89999999999999" where the API said 120.90000000."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'money.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "oversight.settings",
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("manage.py", "migrate", "--noinput", "-v0")
    output = run(
        "-c",
        "import json, django; django.setup(); "
        "from tests.budgets.tenths import alert_at_120_9_cents; "
        "print(json.dumps(alert_at_120_9_cents()))",
    )
    assert words(json.loads(output.splitlines()[-1])) == EXACT


@pytest.mark.django_db
def test_checks_holding_estimates_in_redis_compare_them_with_the_room_exactly(make_agent):
    """The check holds allowed estimates in Redis, and its script compared them with the room
    left as a Lua number (a binary double): 999999999.99999999 ¢ left read as 1e9, so two
    checks of 5e8 ¢ together passed a limit they exceed by a hundred-millionth of a cent."""
    agent = make_agent().agent
    services.save_price(
        price=ModelPrice(
            model="tiny",
            input_cents_per_mtok=Decimal("0.01"),  # a hundred-millionth of a cent a token
            output_cents_per_mtok=Decimal(0),
        )
    )
    services.set_budget(scope="agent", agent=agent, period="daily", limit_cents=10**9)
    report(agent, "tiny", 1)

    def check(path: str) -> guardrails.CheckOutcome:
        return guardrails.check_action(
            agent=agent, action="read_file", params={"path": path}, estimated_cost_cents=5 * 10**8
        )

    assert check("/srv/reports/a.csv").decision == "allow"
    second = check("/srv/reports/b.csv")
    assert second.decision == "deny"
    assert second.verdict.codes == ["budget_exceeded"]
