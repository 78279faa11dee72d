"""Issue 18, item 1: the kill switch and pause stop what is in flight (SPEC §2).

Before: a disabled agent's pending request could still be approved, and its long-poll answered
`approved` with a signed callback.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from django.urls import reverse

from agents import services as agents
from approvals import services
from approvals.models import ApprovalRequest, CallbackDelivery, Status
from audit.models import AuditEvent
from tests.api.test_longpoll import _created_over_http, _wait_in_background
from tests.conftest import client_for


def test_votes_on_a_paused_agents_request_are_refused_until_it_is_resumed(
    db, new_request, approvers, make_user
):
    request = new_request(callback_url="https://agent.example/hook")
    manager = make_user("boss", roles=("manager",))
    agents.set_agent_status(
        agent=request.agent, status="paused", reason="odd traffic", actor=manager
    )
    for vote in (
        lambda: services.approve_request(request_id=request.pk, reviewer=approvers["lead"]),
        lambda: services.reject_request(
            request_id=request.pk, reviewer=approvers["lead"], reason="x"
        ),
    ):
        with pytest.raises(services.AgentFrozen, match="paused \\(odd traffic\\)") as refused:
            vote()
        assert refused.value.status == 409
        assert refused.value.code == "agent_paused"
    request.refresh_from_db()
    assert request.status == Status.PENDING  # frozen, not decided: it may still expire
    assert not request.votes.exists()

    agents.set_agent_status(agent=request.agent, status="active", actor=manager)
    outcome = services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert outcome.decided


def test_the_kill_switch_cancels_pending_requests_in_its_transaction(
    db, new_request, make_agent, approvers, make_user
):
    agent = make_agent().agent
    first = new_request(agent=agent, callback_url="https://agent.example/hook")
    second = new_request(agent=agent, risk_level="high")
    other = new_request()  # another agent's: untouched
    manager = make_user("boss", roles=("manager",))

    agents.set_agent_status(agent=agent, status="disabled", reason="leaking keys", actor=manager)

    for request in (first, second):
        request.refresh_from_db()
        assert request.status == Status.CANCELLED
        assert request.decision_reason == f"Agent {agent.name} was disabled: leaking keys"
        event = AuditEvent.objects.get(event_type="request.cancelled", subject_id=str(request.pk))
        assert event.actor_id == str(manager.pk)
    callback = CallbackDelivery.objects.get(request=first)
    assert '"status":"cancelled"' in callback.body
    assert "leaking keys" in callback.body
    assert ApprovalRequest.objects.get(pk=other.pk).status == Status.PENDING
    with pytest.raises(services.NotPending):
        services.approve_request(request_id=first.pk, reviewer=approvers["lead"])


def test_the_page_refuses_a_vote_on_a_frozen_request_with_409_and_the_inbox_shows_it(
    db, new_request, approvers, make_user
):
    request = new_request()
    agents.set_agent_status(agent=request.agent, status="paused", reason="odd traffic")
    browser = client_for(approvers["lead"])

    inbox = browser.get(reverse("home")).content.decode()
    assert "frozen: agent paused" in inbox
    page = browser.get(reverse("approvals:detail", args=[request.pk])).content.decode()
    assert "its requests are frozen until it is resumed" in page
    assert 'id="approve-form"' not in page

    response = browser.post(
        reverse("approvals:approve", args=[request.pk]),
        {"modified_params": '{"service": "api", "version": "1.2.3"}', "comment": ""},
    )
    assert response.status_code == 409
    assert "frozen until it is resumed" in response.content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == Status.PENDING


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_waiting_agent_hears_cancelled_with_the_reason_when_it_is_disabled(
    web_server, make_agent, make_user
):
    request_id, request_url, headers = _created_over_http(web_server, make_agent)
    waiter, result = _wait_in_background(request_url, headers)
    agent = ApprovalRequest.objects.get(pk=request_id).agent
    agents.set_agent_status(agent=agent, status="disabled", reason="runaway loop")
    stopped_at = time.monotonic()
    waiter.join(timeout=10)
    body = result["body"]
    assert body["status"] == "cancelled"  # type: ignore[index]
    assert "runaway loop" in body["decision"]["reason"]  # type: ignore[index]
    assert result["at"] - stopped_at < 1  # type: ignore[operator]
    # The agent's key still reads its request; nothing of it can be approved any more.
    assert httpx.get(request_url, headers=headers).json()["status"] == "cancelled"


@pytest.mark.django_db(transaction=True)
def test_a_vote_racing_the_kill_switch_never_approves_after_the_stop(
    new_request, make_agent, approvers
):
    """Twenty rounds of a vote and a disable started together: either the vote committed first
    (approved, then nothing to cancel) or the stop did (cancelled, the vote refused)."""
    from django.db import connection

    for _ in range(20):
        agent = make_agent().agent
        request = new_request(agent=agent)
        outcomes: dict[str, object] = {}

        def vote(request_id=request.pk, outcomes=outcomes) -> None:
            try:
                outcomes["vote"] = services.approve_request(
                    request_id=request_id, reviewer=approvers["lead"]
                )
            except services.ApprovalError as exc:
                outcomes["vote"] = exc
            finally:
                connection.close()

        def stop(agent=agent) -> None:
            try:
                agents.set_agent_status(agent=agent, status="disabled", reason="race")
            finally:
                connection.close()

        threads = [threading.Thread(target=vote), threading.Thread(target=stop)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        status = ApprovalRequest.objects.get(pk=request.pk).status
        if isinstance(outcomes["vote"], services.ApprovalError):
            assert status == Status.CANCELLED
        else:
            assert status == Status.APPROVED
