"""Issue 18: what an adversarial review of items 1, 2 and 5 found, each fixed."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from agents import services as agents
from agents.models import Agent
from approvals import services
from approvals.models import ApprovalRequest, Status
from tests.conftest import client_for, shift_into_past

# --- item 1: a create racing the kill switch ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_create_racing_the_kill_switch_is_refused_not_left_pending(
    make_agent, make_user, approvers, monkeypatch
):
    """The agent passed its status check (API auth / create_request's first line) before the
    kill switch committed; its INSERT lands after. Found by review: it stayed pending, and was
    approvable once the agent was re-enabled. Now the create sees the stop and is refused."""
    from guardrails import services as guardrails

    agent = make_agent().agent
    boss = make_user("boss", roles=("manager",))
    real = guardrails.check_action
    checked, go = threading.Event(), threading.Event()

    def slow_check(**kwargs):
        outcome = real(**kwargs)
        checked.set()
        go.wait(10)
        return outcome

    monkeypatch.setattr(guardrails, "check_action", slow_check)
    result: dict[str, object] = {}

    def create() -> None:
        try:
            result["r"] = services.create_request(
                agent=Agent.objects.get(pk=agent.pk),  # as the API's authentication loaded it
                action="write_file",
                params={"path": "/srv/app/x"},
                risk_level="medium",
                justification="racing",
            )
        except Exception as exc:
            result["r"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=create)
    thread.start()
    assert checked.wait(10)
    agents.set_agent_status(agent=agent, status="disabled", reason="incident", actor=boss)
    go.set()
    thread.join(30)
    assert isinstance(result["r"], services.AgentStopped), result["r"]
    assert not ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING).exists()


# --- item 5: re-routing ---------------------------------------------------------------------


def _raise_risk(action: str, risk: str) -> None:
    from guardrails import policies as policy_changes
    from guardrails import policyfile
    from guardrails.models import Policy

    policy = Policy.objects.get(name=action, scope="global")
    fields = {**policyfile.snapshot(policy), "risk_level": risk}
    policy_changes.save_policy(fields=fields, policy=policy, source="test")


def test_reroute_forgets_the_low_confidence_tier_raise(db, new_request, approvers):
    """An agent sending these arguments at high risk with confidence 0.2 is routed to
    [director]; an edit re-routed to high lands on [engineering_manager, director], so the
    engineering manager's edit decides it alone."""
    request = new_request(params={"path": "/srv/app/a.txt"}, confidence=0.2)  # medium, raised
    assert request.route == ["engineering_manager"]
    _raise_risk("write_file", "high")
    fresh = new_request(params={"path": "/srv/app/c.txt"}, confidence=0.2, risk_level="medium")
    assert fresh.route == ["director"]  # what the agent would get for these arguments
    outcome = services.approve_request(
        request_id=request.pk,
        reviewer=approvers["em"],
        modified_params={"path": "/srv/app/c.txt"},
    )
    request.refresh_from_db()
    assert request.route[0] == "director", (request.route, outcome.decided)


def test_reroute_after_escalation_never_reaches_the_new_routes_second_tier(
    db, new_request, approvers
):
    request = new_request(params={"path": "/srv/app/a.txt"})  # medium: [team_lead, em]
    shift_into_past(request.pk, 3 * 3600)  # past half of 4 h
    assert services.escalate_request(request_id=request.pk)
    _raise_risk("write_file", "critical")
    services.approve_request(
        request_id=request.pk, reviewer=approvers["lead"], modified_params={"path": "/srv/b"}
    )
    request.refresh_from_db()
    # A critical request past half-time is with [director, vp]'s second tier; this one stays
    # at director and is never escalated again.
    assert not services.escalate_request(request_id=request.pk)
    assert request.current_tier == "vp_engineering", request.current_tier


# --- item 5: the form's canonical comparison -------------------------------------------------


@pytest.mark.parametrize("edit", ['{"path": 1e400}', '{"path": "\\ud800"}'])
def test_the_approve_form_answers_bad_json_numbers_and_surrogates_without_a_500(
    db, new_request, approvers, edit
):
    request = new_request(params={"path": "/srv/app/a.txt"})
    browser = client_for(approvers["lead"])
    browser.raise_request_exception = False
    response = browser.post(
        reverse("approvals:approve", args=[request.pk]),
        {"modified_params": edit, "comment": ""},
    )
    assert response.status_code != 500
    assert response.status_code == 422


def test_the_owner_when_the_request_was_made_may_approve_it_after_an_owner_change(
    db, make_agent, new_request, make_user
):
    alice = make_user("alice", roles=("approver",), tier="director")
    bob = make_user("bob")
    agent = make_agent(owner=alice).agent  # its key was minted by a command (created_by None)
    request = new_request(agent=agent)
    agents.change_agent(agent=agent, owner=bob, team="")
    # Keys count "when the request was made"; the owner counts only as of now.
    with pytest.raises(services.NotAllowed):
        services.approve_request(request_id=request.pk, reviewer=alice)
