"""Deciding in a real browser: the reason a rejection needs, approve with changes reaching the
agent, the owner kept out, the inbox keys and the countdown (Chromium against uvicorn + Redis)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from django.db import connection

from approvals.models import ApprovalRequest, Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def create(server, agent, **overrides) -> dict:
    body = {
        "action": "write_file",  # medium risk (guardrails' seed)
        "params": {"service": "api", "version": "1.2.3"},
        "risk_level": "medium",
        "justification": "Ship the fix for the login outage.",
        **overrides,
    }
    response = httpx.post(
        f"{server.url}/api/v1/approval-requests",
        json=body,
        headers={"Authorization": f"Bearer {agent.key}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def status_of(request_id: str) -> str:
    return ApprovalRequest.objects.get(pk=request_id).status


def test_reject_without_a_reason_is_refused_with_a_clear_message(
    web_server, log_in, make_agent, approvers
):
    agent = make_agent()
    connection.close()
    created = create(web_server, agent)
    page = log_in("t-lead")
    page.goto(f"{web_server.url}/requests/{created['id']}/")
    page.click("#reject-form button[type=submit]")
    alert = page.wait_for_selector("#reject-form [role=alert]")
    assert "Say why you reject this request" in alert.inner_text()
    assert page.evaluate("document.activeElement.id") == "id_reason", "the reason is focused"
    assert status_of(created["id"]) == Status.PENDING
    page.fill("#id_reason", "Not during the release freeze.")
    page.click("#reject-form button[type=submit]")
    page.wait_for_selector("text=is rejected")
    request = ApprovalRequest.objects.get(pk=created["id"])
    assert (request.status, request.decision_reason) == (
        "rejected",
        "Not during the release freeze.",
    )
    assert page.errors == []


def test_approve_with_changes_reaches_the_agent_as_modified_params(
    web_server, log_in, make_agent, approvers
):
    agent = make_agent()
    connection.close()
    created = create(web_server, agent)
    decision: dict = {}

    def agent_waits() -> None:
        url = f"{web_server.url}/api/v1/approval-requests/{created['id']}?wait=30"
        headers = {"Authorization": f"Bearer {agent.key}"}
        decision.update(httpx.get(url, headers=headers, timeout=40).json())

    waiter = threading.Thread(target=agent_waits)
    waiter.start()
    page = log_in("t-lead")
    page.goto(f"{web_server.url}/requests/{created['id']}/")
    editor = page.locator("#id_modified_params")
    button = page.locator("#approve-button")
    assert button.inner_text() == "Approve"
    editor.fill('{"service": "api", "version": ')
    page.wait_for_selector("#params-status.error")
    assert "Not valid JSON" in page.inner_text("#params-status")
    assert button.is_disabled(), "invalid JSON cannot be sent"
    edited = {"service": "api", "version": "1.2.4", "canary": True}
    editor.fill(json.dumps(edited))
    page.wait_for_selector("#params-diff:not([hidden])")
    assert [line.inner_text() for line in page.query_selector_all("#params-diff .add")] == [
        '+   "canary": true,\n',
        '+   "version": "1.2.4"\n',
    ]
    assert [line.inner_text() for line in page.query_selector_all("#params-diff .del")] == [
        '-   "version": "1.2.3"\n'
    ]
    assert button.inner_text() == "Approve with changes"
    button.click()
    page.wait_for_selector("text=is approved")
    waiter.join(timeout=30)
    assert decision["status"] == "approved"
    assert decision["decision"]["modified_params"] == edited
    assert decision["decision"]["approved_params_sha256"] != created["params_sha256"]
    assert page.errors == []


def test_the_agents_owner_cannot_approve_its_request(web_server, log_in, make_agent, approvers):
    agent = make_agent(owner=approvers["lead"])
    connection.close()
    owner = log_in("t-lead")
    other = log_in("t-em")
    created = create(web_server, agent)
    other.wait_for_selector(f"#request-{created['id']}", timeout=5_000)
    owner.goto(f"{web_server.url}/")  # a fresh read, not only the push
    assert owner.query_selector(f"#request-{created['id']}") is None
    owner.goto(f"{web_server.url}/requests/{created['id']}/")
    assert "You own this agent or created a key it could use" in owner.content()
    assert owner.query_selector("#approve-button") is None
    assert owner.query_selector("#reject-form") is None
    # Even a hand-made POST with the page's own CSRF token is refused.
    token = owner.evaluate("JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken']")
    owner.evaluate(
        """([url, token]) => fetch(url, {method: "POST", headers: {"X-CSRFToken": token},
        body: new URLSearchParams({comment: "mine"})})""",
        [f"/requests/{created['id']}/approve", token],
    )
    assert status_of(created["id"]) == Status.PENDING


def test_inbox_keys_move_the_selection_and_open_the_decision(
    web_server, log_in, make_agent, approvers
):
    agent = make_agent()
    connection.close()
    page = log_in("t-lead")
    first = create(web_server, agent, urgency="high")  # the sooner deadline: listed first
    second = create(web_server, agent, urgency="normal", action="external_api_call")
    page.wait_for_selector(f"#request-{second['id']}", timeout=5_000)
    page.keyboard.press("j")
    page.keyboard.press("j")
    selected = page.locator("tbody tr.is-selected")
    assert selected.get_attribute("id") == f"request-{second['id']}"
    page.keyboard.press("k")
    assert selected.get_attribute("id") == f"request-{first['id']}"
    third = create(web_server, agent, urgency="critical", action="read_file")  # lands on top
    page.wait_for_selector(f"#request-{third['id']}", timeout=5_000)
    assert selected.get_attribute("id") == f"request-{first['id']}", "a push keeps the selection"
    page.keyboard.press("j")  # from the first to the second request, below it
    page.keyboard.press("a")
    page.wait_for_url(f"**/requests/{second['id']}/#approve")
    assert page.evaluate("document.activeElement.id") == "approve-button"
    assert status_of(second["id"]) == Status.PENDING, "a key alone never decides"
    page.keyboard.press("Enter")
    page.wait_for_selector("text=is approved")
    assert status_of(second["id"]) == Status.APPROVED
    assert (status_of(first["id"]), status_of(third["id"])) == (Status.PENDING, Status.PENDING)
    page.wait_for_selector("body[data-live=open]")
    page.keyboard.press("j")
    page.keyboard.press("j")  # the critical one first, then `first`
    page.keyboard.press("r")
    page.wait_for_url(f"**/requests/{first['id']}/#reject")
    assert page.evaluate("document.activeElement.id") == "id_reason"
    page.keyboard.type("rj")  # typing in a field is typing, not shortcuts
    assert page.input_value("#id_reason") == "rj"
    assert page.errors == []


def test_the_countdown_ticks_to_expired_without_a_reload(web_server, log_in, make_agent, approvers):
    agent = make_agent()
    connection.close()
    page = log_in("t-lead")
    page.evaluate("window.sameDocument = true")
    created = create(web_server, agent, timeout_seconds=3)
    countdown = page.locator(f"#request-{created['id']} time.countdown").first
    countdown.wait_for(timeout=5_000)
    seen: list[str | None] = []
    deadline = time.monotonic() + 8
    while not seen or seen[-1] != "expired":
        assert time.monotonic() < deadline, seen
        seen.append(countdown.text_content())
        page.wait_for_timeout(100)
    ticking = [text for text in seen if text in ("1s", "2s")]
    assert ticking, f"it counted down the seconds first: {seen}"
    assert page.evaluate("window.sameDocument") is True, "no reload happened"
    assert "is-expired" in page.get_attribute(f"#request-{created['id']}", "class")
