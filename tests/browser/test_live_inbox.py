"""Live inbox in a real browser (Playwright driving Debian's Chromium against uvicorn + Redis)."""

from __future__ import annotations

import threading

import httpx
import pytest
from django.db import connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def test_a_new_request_appears_live_and_a_decision_reaches_the_agent(
    web_server, log_in, make_agent, approvers
):
    agent = make_agent()
    connection.close()  # the server process must see committed data only
    lead = log_in("t-lead")
    manager = log_in("t-em")
    headers = {"Authorization": f"Bearer {agent.key}"}
    body = {
        "action": "write_file",  # medium risk (guardrails' seed)
        "params": {"path": "/srv/app/release.txt"},
        "risk_level": "medium",
        "justification": "ship it",
    }
    created = httpx.post(
        f"{web_server.url}/api/v1/approval-requests", json=body, headers=headers
    ).json()
    row = f"#request-{created['id']}"
    lead.wait_for_selector(row, timeout=5_000)  # no reload: pushed over the WebSocket
    manager.wait_for_selector(row, timeout=5_000)

    decision: dict[str, object] = {}

    def agent_waits() -> None:
        url = f"{web_server.url}/api/v1/approval-requests/{created['id']}?wait=30"
        decision.update(httpx.get(url, headers=headers, timeout=40).json())

    waiter = threading.Thread(target=agent_waits)
    waiter.start()
    lead.click(f"{row} a")
    lead.click("button.primary")
    lead.wait_for_selector("text=is approved")
    waiter.join(timeout=30)
    assert decision["status"] == "approved"
    manager.wait_for_selector(row, state="detached", timeout=5_000)  # dropped live


def test_a_team_lead_never_sees_a_high_risk_request(web_server, log_in, make_agent, approvers):
    agent = make_agent()
    connection.close()
    lead = log_in("t-lead")
    director = log_in("t-director")
    headers = {"Authorization": f"Bearer {agent.key}"}
    body = {
        "action": "run_command",  # high risk (guardrails' seed)
        "params": {"cmd": "make clean"},
        "risk_level": "high",
        "justification": "cleanup",
    }
    created = httpx.post(
        f"{web_server.url}/api/v1/approval-requests", json=body, headers=headers
    ).json()
    director.wait_for_selector(f"#request-{created['id']}", timeout=5_000)
    assert lead.query_selector(f"#request-{created['id']}") is None


def test_pushed_rows_take_their_place_by_deadline(web_server, log_in, make_agent, approvers):
    """A push carries one row; the page puts it where its deadline belongs (soonest first)."""
    agent = make_agent()
    connection.close()
    lead = log_in("t-lead")
    headers = {"Authorization": f"Bearer {agent.key}"}
    ids = {}
    for urgency in ("low", "critical", "normal"):  # 24 h, 15 min, 4 h
        body = {
            "action": "read_file",
            "params": {"path": f"/srv/steps/{urgency}"},
            "risk_level": "low",
            "urgency": urgency,
            "justification": "order",
        }
        response = httpx.post(
            f"{web_server.url}/api/v1/approval-requests", json=body, headers=headers
        )
        ids[urgency] = response.json()["id"]
        lead.wait_for_selector(f"#request-{ids[urgency]}", timeout=5_000)
    order = lead.eval_on_selector_all("#inbox-rows tr", "rows => rows.map(r => r.id)")
    assert order == [f"request-{ids[u]}" for u in ("critical", "normal", "low")]
    assert lead.eval_on_selector(f"#request-{ids['critical']} time.countdown", "e => e.textContent")
