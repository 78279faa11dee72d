"""Away with a delegate (issue 24): requests routed to the away approver's tier reach the
delegate (inbox, email, live), the delegate's decisions are recorded on the away person's behalf,
and the delegation ends by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import selectors, services
from accounts.models import Delegation
from approvals import emails
from approvals import services as approvals
from approvals.inbox import inbox_context
from audit.models import AuditEvent
from tests.conftest import client_for


@pytest.fixture
def away_lead(approvers):
    """The team lead is away for a day; the director stands in."""
    lead, director = approvers["lead"], approvers["director"]
    for person in approvers.values():  # each their own address, to tell the emails apart
        person.email = f"{person.username}@example.com"
        person.save(update_fields=["email"])
    delegation = services.set_away(
        person=lead, delegate=director, until=timezone.now() + timedelta(days=1), note="leave"
    )
    return lead, director, delegation


def low_request(new_request, make_agent):
    return new_request(make_agent().agent, risk_level="low")  # routed to team leads


@pytest.mark.django_db
def test_setting_an_absence_is_audited(away_lead):
    lead, director, delegation = away_lead
    assert selectors.away(lead, timezone.now()) == delegation
    event = AuditEvent.objects.get(event_type="delegation.set")
    assert event.actor_name == lead.display_name
    assert event.payload["delegate"] == director.username
    assert event.payload["note"] == "leave"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "until", "field"),
    [
        ("lead", timedelta(days=1), "delegate"),  # themselves
        ("em-below", timedelta(days=1), "delegate"),  # a lower tier may not decide what they do
        ("em", -timedelta(minutes=1), "until"),  # in the past
        ("em", timedelta(days=91), "until"),  # too far ahead
    ],
)
def test_a_delegation_that_could_not_work_is_refused(approvers, make_user, who, until, field):
    em = approvers["em"]
    person = em if who == "em-below" else approvers["lead"]
    delegate = {"lead": approvers["lead"], "em-below": approvers["lead"], "em": em}[who]
    with pytest.raises(ValidationError) as refused:
        services.set_away(person=person, delegate=delegate, until=timezone.now() + until)
    assert field in refused.value.message_dict
    assert not Delegation.objects.exists()


@pytest.mark.django_db
def test_a_delegate_who_is_away_too_is_refused(approvers):
    director, vp = approvers["director"], approvers["vp"]
    services.set_away(person=director, delegate=vp, until=timezone.now() + timedelta(hours=2))
    with pytest.raises(ValidationError, match="away too"):
        services.set_away(
            person=approvers["lead"], delegate=director, until=timezone.now() + timedelta(hours=1)
        )


@pytest.mark.django_db
def test_a_new_absence_replaces_the_open_one(away_lead, approvers):
    lead, _, first = away_lead
    second = services.set_away(
        person=lead, delegate=approvers["em"], until=timezone.now() + timedelta(hours=3)
    )
    first.refresh_from_db()
    assert first.ended_at is not None
    assert selectors.away(lead, timezone.now()) == second
    ended = AuditEvent.objects.get(event_type="delegation.ended")
    assert ended.payload["why"] == "replaced"


@pytest.mark.django_db
def test_the_delegate_is_emailed_the_requests_routed_to_the_away_persons_tier(
    away_lead, new_request, make_agent
):
    lead, director, _ = away_lead
    request = low_request(new_request, make_agent)
    assert request.current_tier == lead.tier
    assert emails.recipients(request, lead.tier) == sorted([lead.email, director.email])


@pytest.mark.django_db
def test_without_an_absence_only_the_tier_is_emailed(approvers, new_request, make_agent):
    request = low_request(new_request, make_agent)
    approvers["director"].email = "director@example.com"
    approvers["director"].save(update_fields=["email"])
    assert emails.recipients(request, "team_lead") == [approvers["lead"].email]


@pytest.mark.django_db
def test_the_delegates_decision_is_recorded_on_the_away_persons_behalf(
    away_lead, new_request, make_agent, api
):
    lead, director, _ = away_lead
    request = low_request(new_request, make_agent)
    outcome = approvals.approve_request(request_id=request.pk, reviewer=director)
    assert outcome.decided
    assert outcome.vote is not None
    assert outcome.vote.on_behalf_of == lead
    assert outcome.vote.on_behalf_of_name == lead.display_name
    voted = AuditEvent.objects.get(event_type="request.voted")
    assert voted.payload["on_behalf_of"] == lead.username
    page = client_for(director).get(f"/requests/{request.pk}/")
    assert f"on behalf of {lead.display_name}" in page.content.decode()


@pytest.mark.django_db
def test_a_request_routed_to_the_delegates_own_tier_is_decided_in_their_own_right(
    away_lead, new_request, make_agent
):
    _, director, _ = away_lead
    request = new_request(make_agent().agent, risk_level="high")  # engineering managers first
    request.current_tier = "director"
    request.save(update_fields=["current_tier"])
    outcome = approvals.approve_request(request_id=request.pk, reviewer=director)
    assert outcome.vote is not None
    assert outcome.vote.on_behalf_of is None


@pytest.mark.django_db
def test_after_its_end_a_delegation_no_longer_applies_even_before_the_sweep(
    away_lead, new_request, make_agent
):
    lead, director, delegation = away_lead
    Delegation.objects.filter(pk=delegation.pk).update(ends_at=timezone.now())
    request = low_request(new_request, make_agent)
    assert emails.recipients(request, lead.tier) == [lead.email]
    outcome = approvals.approve_request(request_id=request.pk, reviewer=director)
    assert outcome.vote is not None
    assert outcome.vote.on_behalf_of is None


@pytest.mark.django_db
def test_the_sweep_ends_lapsed_delegations_once(away_lead):
    _, _, delegation = away_lead
    Delegation.objects.filter(pk=delegation.pk).update(ends_at=timezone.now())
    assert services.end_lapsed() == 1
    assert services.end_lapsed() == 0
    delegation.refresh_from_db()
    assert delegation.ended_at == delegation.ends_at
    ended = AuditEvent.objects.get(event_type="delegation.ended")
    assert ended.payload["why"] == "lapsed"
    assert ended.actor_type == "system"


@pytest.mark.django_db
def test_the_delegates_inbox_says_whom_a_row_is_for(away_lead, new_request, make_agent):
    lead, director, _ = away_lead
    low_request(new_request, make_agent)
    context = inbox_context(director)
    assert context["standing_in"] == {"team_lead": lead.display_name}
    page = client_for(director).get("/").content.decode()
    assert f"for {lead.display_name}" in page


@pytest.mark.django_db
def test_the_away_page_sets_and_ends_an_absence(approvers):
    lead, em = approvers["lead"], approvers["em"]
    client = client_for(lead)
    page = client.get("/away/")
    assert page.status_code == 200
    assert em.display_name in page.content.decode()
    until = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    answer = client.post("/away/", {"delegate": em.pk, "until": until, "note": "conference"})
    assert answer.status_code == 302
    delegation = selectors.away(lead, timezone.now())
    assert delegation is not None
    assert delegation.delegate == em
    assert "You are away" in client.get("/away/").content.decode()
    assert "You stand in for" in client_for(em).get("/away/").content.decode()
    client.post("/away/", {"back": "1"})
    assert selectors.away(lead, timezone.now()) is None
    assert AuditEvent.objects.get(event_type="delegation.ended").payload["why"] == "back"


@pytest.mark.django_db
def test_the_away_page_refuses_a_delegate_outside_the_choices(approvers):
    director = approvers["director"]
    client = client_for(director)
    until = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    answer = client.post("/away/", {"delegate": approvers["lead"].pk, "until": until})
    assert answer.status_code == 400
    assert "Select a valid choice" in answer.content.decode()
    assert not Delegation.objects.exists()


@pytest.mark.django_db
def test_the_away_page_is_for_approvers(make_user):
    manager = make_user("only-manager", roles=("manager",))
    assert client_for(manager).get("/away/").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_request_for_the_away_approver_reaches_the_delegate_live(
    approvers, new_request, make_agent
):
    from tests.approvals.test_consumers import connect, session_cookie

    lead, director = approvers["lead"], approvers["director"]
    services.set_away(person=lead, delegate=director, until=timezone.now() + timedelta(days=1))
    agent = make_agent().agent

    async def scenario():
        communicator, connected, _ = await connect(await sync_to_async(session_cookie)(director))
        assert connected
        request = await sync_to_async(new_request)(agent, risk_level="low")
        message = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return request, message

    request, message = async_to_sync(scenario)()
    assert f"request-{request.pk}" in message
    assert f"for {lead.display_name}" in message


@pytest.mark.django_db
def test_a_person_voted_for_by_their_stand_in_does_not_vote_again(
    approvers, new_request, make_agent
):
    """Two approvals of a critical request are two people's: not the away director's twice."""
    director, vp = approvers["director"], approvers["vp"]
    services.set_away(person=director, delegate=vp, until=timezone.now() + timedelta(days=1))
    request = new_request(make_agent().agent, risk_level="critical")
    assert request.current_tier == "director"
    first = approvals.approve_request(request_id=request.pk, reviewer=vp)
    assert first.vote is not None
    assert first.vote.on_behalf_of == director
    with pytest.raises(approvals.AlreadyVoted, match="on your behalf"):
        approvals.approve_request(request_id=request.pk, reviewer=director)
    second = approvals.approve_request(request_id=request.pk, reviewer=approvers["director2"])
    assert second.decided


@pytest.mark.django_db
def test_after_the_away_person_voted_the_stand_in_votes_in_their_own_right(
    approvers, new_request, make_agent
):
    director, vp = approvers["director"], approvers["vp"]
    services.set_away(person=director, delegate=vp, until=timezone.now() + timedelta(days=1))
    request = new_request(make_agent().agent, risk_level="critical")
    approvals.approve_request(request_id=request.pk, reviewer=director)
    outcome = approvals.approve_request(request_id=request.pk, reviewer=vp)
    assert outcome.decided
    assert outcome.vote is not None
    assert outcome.vote.on_behalf_of is None
