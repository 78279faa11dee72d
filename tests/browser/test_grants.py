"""The request page's "also allow calls like this again" choice in Chromium against the real
server (issue 24): under the strict CSP, with no script, it opens, fits a phone (390 px wide, no
sideways scrolling, touch targets at least 44 px tall) and makes a pinned grant with the
approval."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from approvals.models import ApprovalRequest, Status
from grants.models import Grant
from tests.browser.test_phone_inbox import PHONE, fits_a_phone, shot

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def test_on_a_phone_an_approver_approves_and_allows_the_same_folder_again(
    web_server: Any, log_in: Any, make_agent: Any, new_request: Any, approvers: Any
) -> None:
    agent = make_agent().agent
    request = new_request(
        agent=agent,
        action="write_file",
        params={"path": "/srv/app/reports/q3.csv", "content": "figures"},
    )
    connection.close()  # the server process must see committed data only
    page = log_in("t-lead", live=False, **PHONE)
    page.goto(f"{web_server.url}/requests/{request.pk}/")
    page.tap(".grant-choice > summary")
    page.check("input[name=grant-kind][value=pinned]")
    page.check("input[name=grant-pin][value=path]")
    page.fill("input[name=grant-under_path]", "/srv/app/reports")
    page.select_option("select[name=grant-lifetime]", "28800")
    page.fill("input[name=grant-max_uses]", "5")
    shot(page, "phone-grant-choice")
    fits_a_phone(page)
    page.tap("#approve-button")
    page.wait_for_selector(".message")
    assert "Standing approval #" in page.inner_text(".messages")
    grant = Grant.objects.get()
    assert (grant.pins, grant.max_uses) == ({"path": {"prefix": "/srv/app/reports"}}, 5)
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.APPROVED
    assert page.errors == []
