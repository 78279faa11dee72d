"""The agent's budget state where people decide about it: its page and its requests' pages."""

from __future__ import annotations

from tests.budgets.helpers import report
from tests.conftest import client_for


def test_the_agent_and_request_pages_show_the_budgets_and_a_refusal(
    make_agent, make_budget, make_user, new_request
):
    manager = make_user("mgr", roles=("manager", "approver"), tier="director")
    agent = make_agent().agent
    request = new_request(agent=agent)
    make_budget(agent=agent, period="daily", limit_cents=3)
    report(agent)  # 3 ¢: the whole limit
    client = client_for(manager)
    for page in (f"/agents/{agent.name}/", f"/requests/{request.pk}/"):
        html = client.get(page).content.decode()
        assert "Budgets" in html
        assert "100%" in html
        assert "New requests refused until" in html
