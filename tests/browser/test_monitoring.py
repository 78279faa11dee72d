"""The monitoring page in a real browser (SPEC §12, §4): its fairness and overseers sections
load into it under the strict CSP, and it reads on a phone (390 px) without scrolling sideways."""

from __future__ import annotations

import pytest
from django.db import connection

from approvals import services as approvals

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def test_the_sections_load_into_the_page_and_nothing_scrolls_sideways_on_a_phone(
    web_server, log_in, make_user, new_request, approvers
):
    width = 390  # the narrowest SPEC §4 asks for; the pages' tests cover the rest
    make_user("t-manager", roles=("manager",))
    for n in range(3):
        request = new_request(params={"n": n})
        approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    connection.close()  # the server process must see committed data only
    page = log_in("t-manager", live=False)
    page.set_viewport_size({"width": width, "height": 844})

    page.goto(f"{web_server.url}/monitoring/")

    page.wait_for_selector("#fairness table", timeout=10_000)
    page.wait_for_selector("#overseers table", timeout=10_000)
    assert "t-lead" in page.inner_text("#overseers")
    assert "not enough data (3 of 20)" in page.inner_text("#fairness")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.errors == []
