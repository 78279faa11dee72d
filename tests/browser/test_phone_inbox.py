"""The inbox and the request page on a phone (SPEC §4: 390 px wide, no sideways scrolling, touch
targets at least 44 px tall), and bulk decisions (issue 24) by touch and by keyboard, in Chromium
against the real server."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.db import connection

from approvals.models import ApprovalRequest, Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]

PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
WHY = "Roll out the fix for the login outage to the canary hosts before the evening peak traffic."

# Every visible control in the page's main area, with the height of what a finger hits: a
# checkbox's or radio's label (the box inside it is smaller on purpose), else the control itself.
SMALL_TARGETS = """
() => Array.from(document.querySelectorAll(
    "main a, main button, main input, main select, main textarea, main summary"
)).map((el) => {
    const boxed = el.type === "checkbox" || el.type === "radio";
    const target = boxed ? (el.closest("label") || (el.labels && el.labels[0]) || el) : el;
    const box = target.getBoundingClientRect();
    return {what: el.outerHTML.slice(0, 90), width: box.width, height: box.height};
}).filter((t) => t.width > 0 && t.height > 0 && t.height < 44)
"""
SIDEWAYS = "document.scrollingElement.scrollWidth - window.innerWidth"


def shot(page: Any, name: str) -> None:
    """A screenshot for a person to look at, when OVERSIGHT_SCREENSHOTS names a folder."""
    folder = os.environ.get("OVERSIGHT_SCREENSHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def fits_a_phone(page: Any) -> None:
    assert page.evaluate(SIDEWAYS) <= 0, "nothing scrolls sideways"
    assert page.evaluate(SMALL_TARGETS) == []


def test_on_a_phone_both_pages_fit_and_two_rows_are_approved_by_touch(
    web_server, log_in, make_agent, new_request, approvers
):
    agent = make_agent("release-assistant-for-the-payments-platform").agent
    first, second, third = (
        new_request(agent=agent, params={"n": n}, justification=WHY) for n in range(3)
    )
    quorum = new_request(agent=agent, risk_level="critical", justification=WHY)
    connection.close()  # the server process must see committed data only
    page = log_in("t-director", **PHONE)
    assert page.locator(f"#request-{quorum.pk} input[data-pick]").count() == 0, "needs quorum"
    assert page.locator(".bulk-bar").is_hidden(), "no bar before a row is picked"

    page.tap(f"#request-{first.pk} label.pick-target")
    page.tap(f"#request-{second.pk} label.pick-target")
    assert page.inner_text("[data-bulk-count]") == "2 selected"
    shot(page, "phone-inbox-picked")
    fits_a_phone(page)
    page.tap("#bulk-approve")

    page.wait_for_selector("#bulk-result[data-bulk-done]")
    assert "2 of 2 approved" in page.inner_text("#bulk-result h2")
    results = page.locator("#bulk-result .bulk-row.is-decided")
    assert results.count() == 2
    assert results.first.inner_text().endswith("Approved.")
    page.wait_for_selector(f"#request-{first.pk}", state="detached", timeout=5_000)
    page.wait_for_selector(f"#request-{second.pk}", state="detached", timeout=5_000)
    assert page.locator(f"#request-{third.pk}").is_visible()
    shot(page, "phone-inbox-result")
    fits_a_phone(page)
    assert {r.status for r in ApprovalRequest.objects.filter(pk__in=[first.pk, second.pk])} == {
        Status.APPROVED
    }

    page.tap(f"#request-{third.pk} td.action a")
    page.wait_for_selector("#approve-button")
    shot(page, "phone-request")
    fits_a_phone(page)
    assert page.errors == []


def test_on_a_laptop_rows_are_picked_with_the_keyboard_and_approved_together(
    web_server, log_in, make_agent, new_request, approvers
):
    agent = make_agent().agent
    rows = [new_request(agent=agent, params={"n": n}) for n in range(4)]  # soonest first
    connection.close()
    page = log_in("t-lead")
    count = page.locator("[data-bulk-count]")

    page.click(f"#request-{rows[0].pk} input[data-pick]")
    page.click(f"#request-{rows[2].pk} input[data-pick]", modifiers=["Shift"])
    assert count.inner_text() == "3 selected", "shift-click picks the range"
    page.click("[data-pick-clear]")
    assert page.locator(".bulk-bar").is_hidden()

    page.locator("body").focus()
    page.keyboard.press("j")
    page.keyboard.press("x")  # picks the first row
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("x")  # and the third
    assert count.inner_text() == "2 selected"
    shot(page, "laptop-inbox-picked")
    page.keyboard.press("Shift+A")
    assert page.evaluate("document.activeElement.id") == "bulk-approve"
    page.keyboard.press("Enter")

    page.wait_for_selector("#bulk-result[data-bulk-done]")
    assert "2 of 2 approved" in page.inner_text("#bulk-result h2")
    shot(page, "laptop-inbox-result")
    statuses = {r.pk: r.status for r in ApprovalRequest.objects.filter(agent=agent)}
    assert [statuses[r.pk] for r in rows] == [
        Status.APPROVED,
        Status.PENDING,
        Status.APPROVED,
        Status.PENDING,
    ]
    page.wait_for_selector(f"#request-{rows[0].pk}", state="detached", timeout=5_000)
    assert count.inner_text() == "0 selected"
    assert page.errors == []
