"""Live inbox in a real browser (Playwright driving Debian's Chromium against uvicorn + Redis)."""

from __future__ import annotations

import os
import shutil
import threading

import httpx
import pytest
from django.db import connection

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API runs an event loop on this thread; the ORM calls the tests make
    # around it are ordinary synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is required for browser tests (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


def open_inbox(browser, server, username):
    page = browser.new_context().new_page()
    page.goto(f"{server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-live=open]", timeout=10_000)
    return page


def test_a_new_request_appears_live_and_a_decision_reaches_the_agent(
    web_server, browser, make_agent, approvers
):
    agent = make_agent()
    connection.close()  # the server process must see committed data only
    lead = open_inbox(browser, web_server, "t-lead")
    manager = open_inbox(browser, web_server, "t-em")
    headers = {"Authorization": f"Bearer {agent.key}"}
    body = {
        "action": "run_command",
        "params": {"cmd": "make deploy"},
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


def test_a_team_lead_never_sees_a_high_risk_request(web_server, browser, make_agent, approvers):
    agent = make_agent()
    connection.close()
    lead = open_inbox(browser, web_server, "t-lead")
    director = open_inbox(browser, web_server, "t-director")
    headers = {"Authorization": f"Bearer {agent.key}"}
    body = {
        "action": "delete_resource",
        "params": {"id": 1},
        "risk_level": "high",
        "justification": "cleanup",
    }
    created = httpx.post(
        f"{web_server.url}/api/v1/approval-requests", json=body, headers=headers
    ).json()
    director.wait_for_selector(f"#request-{created['id']}", timeout=5_000)
    assert lead.query_selector(f"#request-{created['id']}") is None
