"""A budget alert at an awkward amount, run by the exact-money tests on PostgreSQL in the test
process and on SQLite (the embedded database) in a child process."""

from __future__ import annotations

from decimal import Decimal

from agents import services as agents
from audit.models import AuditEvent
from budgets import services
from budgets.models import Alert, BudgetWindow, ModelPrice
from tests.budgets.helpers import report


def alert_at_120_9_cents() -> dict[str, str]:
    """Reports of 100.1 ¢ and 20.8 ¢ (binary floats add them up to 120.89999999999999) cross
    the 80 % line, 120.8 ¢, of a 151 ¢ budget. What the alert's audit event, the API's budget
    state and the stored window say was spent, and the alert's words."""
    agent, _ = agents.create_agent(name="tenths")
    services.save_price(
        price=ModelPrice(
            model="tenth-of-a-cent",
            input_cents_per_mtok=Decimal(100_000),  # 0.1 ¢ a token
            output_cents_per_mtok=Decimal(0),
        )
    )
    budget = services.set_budget(
        scope="agent", agent=agent, period="daily", limit_cents=151, thresholds=[80]
    )
    report(agent, "tenth-of-a-cent", 1001)
    outcome = report(agent, "tenth-of-a-cent", 208)
    (event,) = AuditEvent.objects.filter(event_type="budget.alert")
    (state,) = outcome.budgets
    return {
        "audit": event.payload["spent_cents"],
        "api": state.as_json()["spent_cents"],
        "window": str(BudgetWindow.objects.get(budget=budget).spent_cents),
        "message": Alert.objects.get().message,
    }
