"""The agent controls on the people's side (SPEC §4, §6): an agent's autonomy, circuit breaker,
outcomes and alerts on its page, the autonomy buttons (each through `controls.services`,
audited), the execution receipt on the request page and in the API, and `agents/me`."""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from agents.models import Agent, AgentStatus
from approvals import services as approvals
from audit.models import AuditEvent
from controls import services
from controls.models import AgentAlert, AlertKind, AutonomyRecommendation, Direction
from controls.outcomes import report_outcome
from tests.conftest import client_for

ME = "/api/v1/agents/me"


@pytest.fixture
def manager(make_user: Any) -> Any:
    return make_user("mgr-a", roles=("manager",))


def page(client: Any, name: str) -> str:
    response = client.get(f"/agents/{name}/")
    assert response.status_code == 200
    return str(response.content.decode())


def recommend(agent: Agent, direction: str, **counts: Any) -> AutonomyRecommendation:
    now = timezone.now()
    fields = {"outcomes": 60, "successes": 59, "decided": 40, "overridden": 1}
    fields.update(counts)
    return AutonomyRecommendation.objects.create(
        agent=agent,
        computed_at=now,
        since=now - timedelta(days=30),
        level=agent.overall_autonomy,
        direction=direction,
        reasons=["Success rate 98.3 % over 60 outcomes (above 95 %)."],
        **fields,
    )


def autonomy_events(agent: Agent) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(event_type="autonomy.changed", subject_id=str(agent.pk)).order_by(
            "sequence"
        )
    )


def approved(new_request: Any, approvers: dict[str, Any], agent: Agent, **fields: Any) -> Any:
    request = new_request(agent=agent, **fields)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["director"])
    request.refresh_from_db()
    return request


# --- the agent's page ---------------------------------------------------------------------------


def test_a_new_agent_shows_the_default_level_a_closed_breaker_and_clear_empty_states(
    db, make_agent, manager
):
    make_agent("fresh-bot")
    html = page(client_for(manager), "fresh-bot")
    assert "2 · partial" in html
    assert ">default</span>" in html
    assert "All follow the agent's level." in html
    assert ">closed</span>" in html
    assert "No outcomes yet" in html
    assert "Not computed yet" in html
    assert "Raise to level" not in html
    assert "Restore level" not in html


def test_own_and_category_levels_and_a_trial_are_shown(db, make_agent, manager):
    agent = make_agent("levels-bot").agent
    services.set_autonomy(agent=agent, level=3, why="steady")
    services.set_autonomy(agent=agent, level=0, category="deploy", why="no deploys")
    until = timezone.now() + timedelta(days=12)
    Agent.objects.filter(pk=agent.pk).update(autonomy_trial_until=until, autonomy_trial_from=2)
    html = page(client_for(manager), "levels-bot")
    assert "3 · conditional" in html
    assert ">default</span>" not in html
    assert "Deploy <strong>0 · manual</strong>" in html
    assert "The others follow the agent's level." in html
    assert "on trial</span> until " + until.strftime("%Y-%m-%d") in html
    assert "raised from 2 · partial" in html


def test_an_open_and_a_tripped_breaker_show_their_count_and_since_when(db, make_agent, manager):
    agent = make_agent("shaky-bot").agent
    opened = timezone.now() - timedelta(minutes=5)
    Agent.objects.filter(pk=agent.pk).update(consecutive_failures=3, breaker_opened_at=opened)
    client = client_for(manager)
    html = page(client, "shaky-bot")
    assert ">open</span>" in html
    assert "3 failures or rejections in a row" in html
    assert opened.strftime("%Y-%m-%d") in html
    assert "Every check needs a person until a success closes it" in html
    Agent.objects.filter(pk=agent.pk).update(consecutive_failures=5, status=AgentStatus.PAUSED)
    html = page(client, "shaky-bot")
    assert ">tripped</span>" in html
    assert "It paused the agent; resuming closes it." in html


def test_a_recommended_raise_shows_its_evidence_and_one_click_starts_a_trial(
    db, make_agent, manager
):
    agent = make_agent("steady-bot").agent
    recommend(agent, Direction.RAISE)
    client = client_for(manager)
    html = page(client, "steady-bot")
    assert "98.3 %" in html
    assert "59 of 60 outcomes" in html
    assert "2.5 %" in html
    assert "1 of 40 decided requests rejected or changed" in html
    assert "Success rate 98.3 % over 60 outcomes (above 95 %)." in html
    assert "Raise to level 3 (30-day trial)" in html
    response = client.post("/agents/steady-bot/autonomy/raise", {"to": 3}, follow=True)
    assert "is at level 3 (conditional) on trial until" in response.content.decode()
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_trial_from) == (3, 2)
    assert agent.autonomy_trial_until > timezone.now() + timedelta(days=29)
    (event,) = autonomy_events(agent)
    assert (event.actor_name, event.payload["source"]) == ("mgr-a", "recommendation")
    assert (event.payload["from"], event.payload["to"]) == (2, 3)
    html = page(client, "steady-bot")
    assert "on trial</span>" in html
    assert "Raise to level" not in html, "the record starts again at the new level"
    assert "recomputing" in html, "the figures shown are from before the raise"


def test_a_raise_from_a_stale_page_or_without_a_raise_recommended_changes_nothing(
    db, make_agent, manager
):
    agent = make_agent("stale-bot").agent
    client = client_for(manager)
    recommend(agent, Direction.RAISE)
    response = client.post("/agents/stale-bot/autonomy/raise", {"to": 4}, follow=True)
    assert "The page was out of date" in response.content.decode()
    AutonomyRecommendation.objects.filter(agent=agent).update(direction=Direction.KEEP)
    response = client.post("/agents/stale-bot/autonomy/raise", {"to": 3}, follow=True)
    assert "does not recommend a raise" in response.content.decode()
    agent.refresh_from_db()
    assert agent.autonomy_level is None
    assert autonomy_events(agent) == []


def test_a_recommendation_for_another_level_offers_no_raise(db, make_agent, manager):
    agent = make_agent("moved-bot").agent
    recommend(agent, Direction.RAISE)
    services.set_autonomy(agent=agent, level=4, why="by hand")
    html = page(client_for(manager), "moved-bot")
    assert "recomputing" in html
    assert "Raise to level" not in html


def test_an_automatic_lowering_shows_its_alert_and_a_manager_restores_it(db, make_agent, manager):
    agent = make_agent("lowered-bot").agent
    services.set_autonomy(agent=agent, level=3, why="steady")
    services.lower_autonomy(agent=agent, reasons=["1 critical failure(s)."])
    client = client_for(manager)
    html = page(client, "lowered-bot")
    assert "2 · partial" in html
    assert "from 3 · conditional" in html
    assert "Restore level 3" in html
    assert "Autonomy lowered</span>" in html, "the alert is beside the violations"
    assert "1 critical failure(s)." in html
    response = client.post("/agents/lowered-bot/autonomy/restore", follow=True)
    assert "levels are restored: 3 (conditional)" in response.content.decode()
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_restorable) == (3, None)
    event = autonomy_events(agent)[-1]
    assert (event.actor_name, event.payload["source"], event.payload["to"]) == (
        "mgr-a",
        "restored",
        3,
    )
    assert "Restore level" not in page(client, "lowered-bot")
    response = client.post("/agents/lowered-bot/autonomy/restore", follow=True)
    assert "No automatic lowering" in response.content.decode()


def test_a_manager_sets_the_overall_and_a_categorys_level_with_a_reason(db, make_agent, manager):
    agent = make_agent("hand-bot").agent
    client = client_for(manager)
    response = client.post(
        "/agents/hand-bot/autonomy", {"level": "4", "reason": "months of clean runs"}, follow=True
    )
    assert "hand-bot are at level 4 (high) now." in response.content.decode()
    client.post(
        "/agents/hand-bot/autonomy",
        {"category": "deploy", "level": "1", "reason": "deploys need a person"},
    )
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_by_category) == (4, {"deploy": 1})
    response = client.post(
        "/agents/hand-bot/autonomy",
        {"category": "deploy", "level": "unset", "reason": "the pipeline has its own gate"},
        follow=True,
    )
    assert "deploy actions follow its overall level again" in response.content.decode()
    client.post("/agents/hand-bot/autonomy", {"level": "unset", "reason": "back to default"})
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_by_category) == (None, {})
    events = autonomy_events(agent)
    assert [(e.payload["category"], e.payload["own_to"], e.payload["why"]) for e in events] == [
        (None, 4, "months of clean runs"),
        ("deploy", 1, "deploys need a person"),
        ("deploy", None, "the pipeline has its own gate"),
        (None, None, "back to default"),
    ]
    assert [e.payload["to"] for e in events] == [4, 1, 4, 2]
    assert {e.actor_name for e in events} == {"mgr-a"}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"level": "3"}, "Say why the level changes."),
        ({"level": "3", "reason": "   "}, "Say why the level changes."),
        ({"reason": "no level chosen"}, "Choose a level."),
        ({"level": "6", "reason": "too far"}, "Select a valid choice."),
        ({"level": "2", "category": "teleport", "reason": "x"}, "Select a valid choice."),
    ],
)
def test_a_level_form_with_a_mistake_changes_nothing_and_says_why(
    db, make_agent, manager, form, message
):
    agent = make_agent("typo-bot").agent
    response = client_for(manager).post("/agents/typo-bot/autonomy", form, follow=True)
    assert message in response.content.decode()
    agent.refresh_from_db()
    assert (agent.autonomy_level, agent.autonomy_by_category) == (None, {})
    assert autonomy_events(agent) == []


def test_the_autonomy_controls_are_for_managers_and_admins_only(
    db, make_agent, make_user, approvers
):
    agent = make_agent("guarded-bot").agent
    recommend(agent, Direction.RAISE)
    Agent.objects.filter(pk=agent.pk).update(autonomy_restorable={"level": 4, "categories": {}})
    posts = {
        "/agents/guarded-bot/autonomy": {"level": "5", "reason": "why not"},
        "/agents/guarded-bot/autonomy/raise": {"to": 3},
        "/agents/guarded-bot/autonomy/restore": {},
    }
    for person in (approvers["vp"], make_user(roles=("compliance",))):
        for path, form in posts.items():
            assert client_for(person).post(path, form).status_code == 403
    admin = client_for(make_user(roles=("admin",)))
    assert admin.get("/agents/guarded-bot/autonomy").status_code == 405, "POST only"
    assert admin.post("/agents/no-such-bot/autonomy/restore").status_code == 404
    agent.refresh_from_db()
    assert agent.autonomy_level is None
    assert autonomy_events(agent) == []
    assert admin.post("/agents/guarded-bot/autonomy/raise", {"to": 3}).status_code == 302
    assert autonomy_events(agent)[0].actor_name.startswith("person")


def test_recent_outcomes_show_result_receipt_and_error_and_link_to_their_request(
    db, make_agent, manager, new_request, approvers
):
    agent = make_agent("worker-bot").agent
    request = approved(new_request, approvers, agent)
    report_outcome(
        agent=agent,
        action=request.action,
        params=request.params,
        approval_request_id=request.pk,
        success=True,
    )
    report_outcome(
        agent=agent,
        action="read_file",
        params={"path": "/srv/data/x"},
        success=False,
        error="FileNotFoundError: /srv/data/x " + "x" * 300,
    )
    html = page(client_for(manager), "worker-bot")
    table = html[html.index('id="outcomes-heading"') :]
    assert f'href="/requests/{request.pk}/"' in table
    assert ">executed as approved</span>" in table
    assert ">succeeded</span>" in table
    assert ">failed</span>" in table
    shown = re.search(r">(FileNotFoundError: /srv/data/x x*…)<", table)
    assert shown is not None
    assert len(shown[1]) <= 100, "a long error is cut short (its title has more)"


def test_the_agent_page_reads_outcomes_and_alerts_in_a_fixed_number_of_queries(
    db, make_agent, manager, new_request, approvers, django_assert_max_num_queries
):
    agent = make_agent("busy-bot", team="ops").agent
    client = client_for(manager)

    def some(count: int) -> None:
        for _ in range(count):
            request = approved(new_request, approvers, agent)
            report_outcome(
                agent=agent,
                action=request.action,
                params=request.params,
                approval_request_id=request.pk,
                success=True,
            )
            AgentAlert.objects.create(kind=AlertKind.AUTONOMY_LOWERED, agent=agent, message="m")

    some(1)
    with django_assert_max_num_queries(30) as few:
        page(client, "busy-bot")
    some(7)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = page(client, "busy-bot")
    assert html.count(">executed as approved</span>") == 8


def test_a_teams_cascade_alert_shows_on_its_agents_pages(db, make_agent, manager):
    make_agent("team-bot", team="payments")
    make_agent("other-bot", team="search")
    AgentAlert.objects.create(
        kind=AlertKind.CASCADE,
        team="payments",
        window_start=timezone.now(),
        message="3 agents of team payments failed.",
    )
    client = client_for(manager)
    assert "3 agents of team payments failed." in page(client, "team-bot")
    assert "3 agents of team payments failed." not in page(client, "other-bot")


# --- the agents list ---------------------------------------------------------------------------


def test_the_list_shows_autonomy_and_breaker_and_filters_by_team(db, make_agent, manager):
    steady = make_agent("steady-one", team="payments").agent
    shaky = make_agent("shaky-one", team="payments").agent
    make_agent("elsewhere-one", team="search")
    services.set_autonomy(agent=steady, level=4, why="clean")
    Agent.objects.filter(pk=shaky.pk).update(
        consecutive_failures=3, breaker_opened_at=timezone.now()
    )
    client = client_for(manager)
    html = client.get("/agents/").content.decode()
    row = html[html.index("steady-one") :]
    assert "4 · high" in row[: row.index("</tr>")]
    row = html[html.index("shaky-one") :]
    row = row[: row.index("</tr>")]
    assert "2 · partial" in row
    assert ">default</span>" in row
    assert ">open</span>" in row
    assert "3 in a row" in row
    assert 'href="?team=payments"' in html
    html = client.get("/agents/?team=payments").content.decode()
    assert "Agents of team payments" in html
    assert "steady-one" in html
    assert "shaky-one" in html
    assert "elsewhere-one" not in html
    assert "1 active" not in html
    assert "2 active" in html
    html = client.get("/agents/?team=nobody").content.decode()
    assert "No agent belongs to team nobody." in html


# --- the request page ---------------------------------------------------------------------------


def request_page(client: Any, request: Any) -> str:
    response = client.get(f"/requests/{request.pk}/")
    assert response.status_code == 200
    return str(response.content.decode())


def test_an_approved_request_without_an_outcome_has_no_receipt_yet(
    db, make_agent, new_request, approvers, manager
):
    request = approved(new_request, approvers, make_agent().agent)
    html = request_page(client_for(manager), request)
    assert "No receipt yet" in html
    pending = new_request()
    assert "Execution" not in request_page(client_for(manager), pending)


def test_a_request_executed_as_approved_says_so_with_the_time(
    db, make_agent, new_request, approvers, manager
):
    agent = make_agent().agent
    request = approved(new_request, approvers, agent)
    outcome = report_outcome(
        agent=agent,
        action=request.action,
        params=request.params,
        approval_request_id=request.pk,
        success=False,
        error="timeout talking to the registry",
    )
    html = request_page(client_for(manager), request)
    assert "Executed as approved at " + outcome.created_at.strftime("%Y-%m-%d") in html
    assert ">failed</span>" in html
    assert "timeout talking to the registry" in html
    assert "agent disabled" not in html
    assert "No receipt yet" not in html


def test_other_arguments_than_approved_show_the_mismatch_and_the_disabled_agent(
    db, make_agent, new_request, approvers, manager
):
    agent = make_agent("rogue-bot").agent
    request = approved(new_request, approvers, agent)
    outcome = report_outcome(
        agent=agent,
        action=request.action,
        params={"service": "api", "version": "9.9.9"},
        approval_request_id=request.pk,
        success=True,
    )
    html = request_page(client_for(manager), request)
    assert "Executed other arguments than approved</strong> at " in html
    assert "— agent disabled" in html
    assert outcome.params_sha256 in html
    assert 'class="alert error" role="alert"' in html


def test_executing_a_request_that_was_not_approved_shows_on_its_page(
    db, make_agent, new_request, manager
):
    agent = make_agent().agent
    request = new_request(agent=agent)
    report_outcome(
        agent=agent,
        action=request.action,
        params=request.params,
        approval_request_id=request.pk,
        success=True,
    )
    request.refresh_from_db()
    assert request.status == "cancelled", "disabling the agent cancelled it"
    html = request_page(client_for(manager), request)
    assert "Executed although not approved</strong>" in html
    assert "— agent disabled" in html


# --- the agent API -------------------------------------------------------------------------------


def test_the_api_answers_a_requests_receipt_or_null(db, make_agent, new_request, approvers, api):
    mine = make_agent()
    request = approved(new_request, approvers, mine.agent)
    url = f"/api/v1/approval-requests/{request.pk}"
    assert api(mine.key).get(url).json()["receipt"] is None
    outcome = report_outcome(
        agent=mine.agent,
        action=request.action,
        params=request.params,
        approval_request_id=request.pk,
        success=True,
    )
    receipt = api(mine.key).get(url).json()["receipt"]
    assert receipt == {
        "outcome_id": str(outcome.pk),
        "success": True,
        "receipt": "matched",
        "executed_params_sha256": request.approved_params_sha256,
        "reported_at": outcome.created_at.astimezone(dt.UTC).isoformat(),
    }
    listed = api(mine.key).get("/api/v1/approval-requests").json()["results"]
    assert listed[0]["receipt"] == receipt
    created = api(mine.key).post(
        "/api/v1/approval-requests",
        {"action": "write_file", "params": {"path": "/srv/data/y"}, "justification": "why not"},
    )
    assert created.status_code == 201
    assert created.json()["receipt"] is None


def test_the_list_reads_receipts_with_the_requests_not_one_query_each(
    db, make_agent, new_request, approvers, api, django_assert_max_num_queries
):
    mine = make_agent()

    def some(count: int) -> None:
        for _ in range(count):
            request = approved(new_request, approvers, mine.agent)
            report_outcome(
                agent=mine.agent,
                action=request.action,
                params=request.params,
                approval_request_id=request.pk,
                success=True,
            )

    some(2)
    with django_assert_max_num_queries(12) as few:
        results = api(mine.key).get("/api/v1/approval-requests").json()["results"]
    assert [r["receipt"]["receipt"] for r in results] == ["matched", "matched"]
    some(10)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(api(mine.key).get("/api/v1/approval-requests").json()["results"]) == 12


def test_agents_me_tells_the_agent_its_autonomy_and_circuit_breaker(db, make_agent, api):
    mine = make_agent()
    body = api(mine.key).get(ME).json()
    assert body["autonomy"] == {
        "level": 2,
        "name": "partial",
        "is_default": True,
        "by_category": {},
        "trial_until": None,
    }
    assert body["circuit_breaker"] == {
        "state": "closed",
        "consecutive_failures": 0,
        "opened_at": None,
    }
    services.set_autonomy(agent=mine.agent, level=3, why="x")
    services.set_autonomy(agent=mine.agent, level=1, category="deploy", why="x")
    until = timezone.now() + timedelta(days=30)
    opened = timezone.now()
    Agent.objects.filter(pk=mine.agent.pk).update(
        autonomy_trial_until=until,
        autonomy_trial_from=2,
        consecutive_failures=3,
        breaker_opened_at=opened,
    )
    body = api(mine.key).get(ME).json()
    assert body["autonomy"]["level"] == 3
    assert body["autonomy"]["name"] == "conditional"
    assert body["autonomy"]["is_default"] is False
    assert body["autonomy"]["by_category"] == {"deploy": 1}
    assert body["autonomy"]["trial_until"] is not None
    assert body["circuit_breaker"]["state"] == "open"
    assert body["circuit_breaker"]["consecutive_failures"] == 3
    assert body["circuit_breaker"]["opened_at"] is not None


def test_the_schema_documents_the_receipt_autonomy_and_breaker(db, api):
    schemas = api(None).get("/api/v1/schema/?format=json").json()["components"]["schemas"]
    assert "receipt" in schemas["ApprovalRequest"]["properties"]
    me = schemas["AgentMe"]["properties"]
    assert {"autonomy", "circuit_breaker"} <= set(me)
