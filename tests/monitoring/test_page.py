"""The monitoring page (SPEC §12, §4): managers read it all, compliance all but the overseers,
others get 403; filters; charts with a table of the same numbers; a query count that does not
grow with the data, and fewer queries once the figures are cached."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controls.models import Outcome
from monitoring import alerts
from monitoring.models import AlertState, MonitorAlert
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def outcomes(agent, *, ok: int, failed: int) -> None:
    now = timezone.now()
    Outcome.objects.bulk_create(
        Outcome(
            agent=agent, action="deploy", params_sha256="0" * 64, success=n < ok,
            error="" if n < ok else "boom", created_at=now - timedelta(seconds=n + 1),
        )
        for n in range(ok + failed)
    )  # fmt: skip


@pytest.mark.parametrize(
    ("roles", "status", "overseers"),
    [(("manager",), 200, True), (("compliance",), 200, False), (("approver",), 403, None)],
)
def test_who_may_read_it(make_user, roles, status, overseers):
    user = make_user(roles=roles, tier="team_lead" if "approver" in roles else "")

    response = client_for(user).get("/monitoring/")

    assert response.status_code == status
    if status == 200:
        assert (b'id="overseers"' in response.content) is overseers
        assert b"Success rate" in response.content


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get("/monitoring/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_a_firing_alert_and_a_breach_are_shown_with_words_not_colour_alone(make_user, make_agent):
    agent = make_agent().agent
    outcomes(agent, ok=5, failed=5)
    alerts.evaluate()
    manager = client_for(make_user(roles=("manager",)))

    page = manager.get("/monitoring/").content.decode()

    assert "1 firing" in page
    assert f"{agent.name}: success rate 50% today (5 of 10 outcomes), below 85 %." in page
    assert "missed: above 90 %" in page
    assert "<svg" in page
    assert "The numbers, by day" in page


def test_filters_narrow_the_figures_to_an_agent_or_a_team(make_user, make_agent):
    shown = make_agent(team="data").agent
    hidden = make_agent(team="web").agent
    outcomes(shown, ok=3, failed=0)
    outcomes(hidden, ok=0, failed=4)
    manager = client_for(make_user(roles=("manager",)))

    for query in (f"?agent={shown.name}", "?team=data"):
        response = manager.get(f"/monitoring/{query}&days=7")
        names = [row["name"] for row in response.context["agents"]]
        assert names == [shown.name]
        assert response.context["metrics"][0]["total"] == "100 %"
    assert manager.get("/monitoring/?days=5").status_code == 200  # an unknown period: the default


def test_the_query_count_is_pinned_and_smaller_when_cached(make_user, make_agent):
    manager = client_for(make_user(roles=("manager",)))

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert manager.get("/monitoring/").status_code == 200
        return len(captured)

    cold = queries()
    cached = queries()
    cache.clear()
    for n in range(4):
        agent = make_agent(team=f"team-{n}").agent
        outcomes(agent, ok=5, failed=n + 5)
    alerts.evaluate()
    assert MonitorAlert.objects.filter(state=AlertState.FIRING).exists()
    assert queries() == cold
    assert queries() == cached < cold


@pytest.mark.parametrize(
    ("roles", "fairness", "overseers"),
    [(("manager",), 200, 200), (("compliance",), 200, 403), (("approver",), 403, 403)],
)
def test_the_sections_that_load_into_the_page_check_the_role_too(
    make_user, roles, fairness, overseers
):
    client = client_for(make_user(roles=roles, tier="team_lead" if "approver" in roles else ""))

    assert client.get("/monitoring/fairness", HTTP_HX_REQUEST="true").status_code == fairness
    assert client.get("/monitoring/overseers", HTTP_HX_REQUEST="true").status_code == overseers


def test_a_section_is_a_fragment_for_htmx_and_a_page_of_its_own_otherwise(make_user):
    manager = client_for(make_user(roles=("manager",)))

    fragment = manager.get("/monitoring/fairness?days=7", HTTP_HX_REQUEST="true").content.decode()
    page = manager.get("/monitoring/overseers?days=7").content.decode()

    assert fragment.lstrip().startswith("<h2")
    assert "Fairness of decisions" in fragment
    assert "<html" in page
    assert "Oversight of the overseers" in page
    assert 'href="/monitoring/?days=7"' in page


@pytest.mark.parametrize("path", ["/monitoring/fairness", "/monitoring/overseers"])
def test_each_sections_query_count_is_pinned(make_user, make_agent, new_request, approvers, path):
    from approvals import services as approvals

    manager = client_for(make_user(roles=("manager",)))

    def queries() -> int:
        cache.clear()
        with CaptureQueriesContext(connection) as captured:
            assert manager.get(path, HTTP_HX_REQUEST="true").status_code == 200
        return len(captured)

    empty = queries()
    for n in range(3):
        request = new_request(agent=make_agent(team=f"t{n}").agent, params={"n": n})
        approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert queries() == empty
