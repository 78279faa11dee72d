"""Issue 18, item 2: nobody decides what they could have asked for themselves (SPEC §2).

Before: any manager could mint a key for any agent, ask as that agent and approve the request
themselves, since self-approval looked only at the agent's owner.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from agents import services as agents
from agents.models import ApiKey
from approvals import emails, selectors, services
from approvals.models import Vote
from audit.models import AuditEvent
from tests.conftest import client_for


@pytest.fixture
def insider(make_user):
    """A manager who is also an approver at director level: may decide almost anything."""
    user = make_user("insider", roles=("manager", "approver"), tier="director")
    user.email = "insider@example.com"
    user.save(update_fields=["email"])
    return user


def test_whoever_created_a_live_key_counts_as_the_agents_owner(
    db, make_agent, new_request, insider
):
    agent = make_agent(owner=None).agent
    agents.issue_api_key(agent=agent, created_by=insider, label="mine")
    request = new_request(agent=agent)

    with pytest.raises(services.NotAllowed, match="created a key it could use"):
        services.approve_request(request_id=request.pk, reviewer=insider)
    assert not Vote.objects.filter(request=request).exists()
    # The other doors apply the same rule: not in their inbox, not emailed.
    assert request not in selectors.decidable_by(insider)
    assert "insider@example.com" not in emails.recipients(request, "director")
    page = client_for(insider).get(reverse("approvals:detail", args=[request.pk]))
    assert "created a key it could use" in page.content.decode()


def test_a_key_revoked_after_the_request_still_counts_one_revoked_before_does_not(
    db, make_agent, new_request, insider, approvers
):
    agent = make_agent(owner=None).agent
    key, _ = agents.issue_api_key(agent=agent, created_by=insider)
    request = new_request(agent=agent)
    agents.revoke_api_key(api_key=key, revoked_by=insider)  # too late: they could have asked
    with pytest.raises(services.NotAllowed):
        services.approve_request(request_id=request.pk, reviewer=insider)

    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now() - timedelta(hours=1))
    later = new_request(agent=agent)
    assert services.approve_request(request_id=later.pk, reviewer=insider).decided


def test_minting_a_key_is_audited_with_who_saw_the_secret(db, make_agent, insider):
    agent = make_agent().agent
    key, plaintext = agents.issue_api_key(agent=agent, created_by=insider)
    event = AuditEvent.objects.get(event_type="api_key.created", subject_id=str(key.pk))
    assert event.payload["shown_to"] == "insider"
    assert event.actor_id == str(insider.pk)
    assert plaintext not in str(event.payload)
    console, _ = agents.issue_api_key(agent=agent)
    event = AuditEvent.objects.get(event_type="api_key.created", subject_id=str(console.pk))
    assert event.payload["shown_to"] == "console"


def test_an_admin_may_allow_self_approval_for_one_agent_with_a_reason(
    db, make_agent, new_request, make_user, insider
):
    admin = make_user("root", roles=("admin",))
    agent = make_agent(owner=insider).agent
    other = make_agent(owner=insider).agent

    with pytest.raises(PermissionDenied):
        agents.set_self_approval(agent=agent, allowed=True, reason="solo team", actor=insider)
    assert agents.set_self_approval(agent=agent, allowed=True, reason="solo team", actor=admin)
    event = AuditEvent.objects.get(event_type="agent.changed", subject_id=str(agent.pk))
    assert event.payload == {
        "before": {"allow_self_approval": False},
        "after": {"allow_self_approval": True},
        "reason": "solo team",
    }

    allowed = new_request(agent=agent)
    outcome = services.approve_request(request_id=allowed.pk, reviewer=insider)
    assert outcome.vote is not None
    assert outcome.vote.is_self_approval
    assert AuditEvent.objects.filter(
        event_type="request.self_approved", subject_id=str(allowed.pk)
    ).exists()
    with pytest.raises(services.NotAllowed):  # only for the agent the admin named
        services.approve_request(request_id=new_request(agent=other).pk, reviewer=insider)
