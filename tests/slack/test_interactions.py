"""Clicks in Slack: signed by Slack or refused, decided by the same services as the browser,
refusals told back to Slack. Interactions are signed as Slack signs them
(tests/support/slack.py); the app's calls go to the fake Slack Web API."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from approvals import services
from approvals.models import Status, Vote
from audit.models import AuditEvent
from slack import delivery, tasks
from slack import services as slack_services
from slack.models import CallKind, LinkMethod, SlackDelivery, SlackInteraction, SlackLink
from tests.conftest import client_for
from tests.support.slack import block_action, reject_submission

pytestmark = pytest.mark.django_db

LEAD = "U0LEAD"


@pytest.fixture
def linked(approvers):
    def link(person: str = "lead", slack_user: str = LEAD):
        return slack_services.link(
            user=approvers[person], slack_user_id=slack_user, method=LinkMethod.ADMIN, actor=None
        )

    return link


@pytest.fixture
def posted(fake_slack, new_request):
    """A request posted to Slack; returns it and the buttons of its message."""

    def make(**fields):
        request = new_request(**fields)
        tasks.sweep()
        (message,) = [
            m for m in fake_slack.calls_of("chat.postMessage") if str(request.pk) in str(m)
        ]
        (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
        return request, {button["action_id"]: button for button in actions["elements"]}

    return make


def _approve(buttons, user=LEAD):
    return block_action("oversight_approve", buttons["oversight_approve"]["value"], user=user)


def _replies(fake_slack):
    tasks.sweep()
    return fake_slack.calls_of("chat.postEphemeral")


def test_a_slack_approval_by_a_linked_approver_decides_the_request(
    fake_slack, posted, linked, approvers, interact
):
    linked()
    request, buttons = posted()
    response = interact(_approve(buttons))
    assert response.status_code == 200
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert request.decided_by == approvers["lead"]
    vote = Vote.objects.get(request=request)
    assert vote.params_sha256 == request.current_params_sha256
    voted = AuditEvent.objects.get(event_type="request.voted", subject_id=str(request.pk))
    assert voted.actor_id == str(approvers["lead"].pk)
    assert voted.payload["vote"] == "approve"
    tasks.sweep()
    (updated,) = fake_slack.calls_of("chat.update")
    assert "Approved* by t-lead" in str(updated["blocks"])
    assert fake_slack.calls_of("chat.postEphemeral") == [], "the message says it all"


def test_a_wrongly_signed_interaction_is_refused(fake_slack, posted, linked, interact):
    linked()
    request, buttons = posted()
    response = interact(_approve(buttons), secret="not-the-signing-secret")
    assert response.status_code == 401
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert not SlackInteraction.objects.exists()


def test_an_interaction_with_a_stale_timestamp_is_refused(fake_slack, posted, linked, interact):
    linked()
    request, buttons = posted()
    response = interact(_approve(buttons), timestamp=int(time.time()) - 6 * 60)
    assert response.status_code == 401
    assert b"stale" in response.content
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_an_unsigned_interaction_is_refused(fake_slack, posted, linked):
    from django.test import Client

    from tests.support.slack import interaction_body

    linked()
    request, buttons = posted()
    response = Client().post(
        "/integrations/slack/interactions",
        data=interaction_body(_approve(buttons)),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 401
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_a_replayed_interaction_is_refused(fake_slack, posted, linked, interact, approvers):
    from django.test import Client

    from tests.support.slack import interaction_body, signed_headers

    linked()
    request, buttons = posted(risk_level="critical")  # two approvals needed: a replay would count
    linked("director", "U0DIR")
    body = interaction_body(_approve(buttons, user="U0DIR"))
    headers = signed_headers(body)
    first = Client().post(
        "/integrations/slack/interactions",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    again = Client().post(
        "/integrations/slack/interactions",
        data=body,
        content_type="application/x-www-form-urlencoded",
        headers=headers,
    )
    assert (first.status_code, again.status_code) == (200, 409)
    assert Vote.objects.filter(request=request).count() == 1
    assert len(_replies(fake_slack)) == 1, "only the first was answered (approval recorded)"


def test_a_slack_approval_by_a_person_who_may_not_decide_is_refused_with_a_message_back(
    fake_slack, posted, linked, interact
):
    linked()  # a team lead
    request, buttons = posted(risk_level="high")  # needs an engineering manager or above
    response = interact(_approve(buttons))
    assert response.status_code == 200
    request.refresh_from_db()
    assert request.status == Status.PENDING
    assert not Vote.objects.filter(request=request).exists()
    (reply,) = _replies(fake_slack)
    assert reply["user"] == LEAD
    assert reply["channel"] == "C0LEADS"
    assert reply["text"].startswith("Not approved: This high-risk request needs an approver at")


def test_the_agents_owner_cannot_approve_in_slack_either(
    fake_slack, posted, linked, interact, approvers, make_agent
):
    linked()
    request, buttons = posted(agent=make_agent(owner=approvers["lead"]).agent)
    interact(_approve(buttons))
    request.refresh_from_db()
    assert request.status == Status.PENDING
    (reply,) = _replies(fake_slack)
    assert "You own this agent" in reply["text"]


def test_a_paused_agents_request_cannot_be_approved_in_slack(
    fake_slack, posted, linked, interact, approvers, make_agent
):
    from agents import services as agents

    linked()
    agent = make_agent().agent
    request, buttons = posted(agent=agent)
    agents.set_agent_status(
        agent=agent, status="paused", reason="investigating", actor=approvers["em"]
    )
    interact(_approve(buttons))
    request.refresh_from_db()
    assert request.status == Status.PENDING
    (reply,) = _replies(fake_slack)
    assert "paused" in reply["text"]


def test_an_approval_of_arguments_changed_since_the_message_is_refused(
    fake_slack, posted, linked, interact, approvers
):
    linked()
    linked("director", "U0DIR")
    request, buttons = posted(risk_level="critical")
    # Another approver changes the arguments in the browser (not yet decided: quorum of two).
    services.approve_request(
        request_id=request.pk,
        reviewer=approvers["director2"],
        modified_params={"service": "api", "version": "1.2.4"},
    )
    interact(_approve(buttons, user="U0DIR"))
    assert not Vote.objects.filter(request=request, voter=approvers["director"]).exists()
    (reply,) = _replies(fake_slack)
    assert "changed the arguments" in reply["text"]


def test_an_unlinked_slack_user_is_told_how_to_link_and_can_then_decide(
    fake_slack, posted, interact, approvers
):
    request, buttons = posted()
    interact(_approve(buttons))  # U0LEAD is unknown to Slack's users.info here, and unlinked
    request.refresh_from_db()
    assert request.status == Status.PENDING
    (reply,) = _replies(fake_slack)
    assert "not linked" in reply["text"]
    url = reply["text"].split("<", 1)[1].split("|", 1)[0]
    assert url.startswith("https://oversight.example/integrations/slack/link?token=")
    token = parse_qs(urlsplit(url).query)["token"][0]

    browser = client_for(approvers["lead"])
    page = browser.get(reverse("slack:link"), {"token": token})
    assert page.status_code == 200
    assert LEAD.encode() in page.content
    assert not SlackLink.objects.exists(), "a GET links nothing"
    # Slack vouches for the account's address, which is the lead's (linking by email is what
    # would have linked it on the click, but Slack did not know the account then).
    fake_slack.add_user(LEAD, approvers["lead"].email)
    browser.post(reverse("slack:link"), {"token": token})
    link = SlackLink.objects.get()
    assert (link.user, link.slack_user_id, link.method) == (approvers["lead"], LEAD, "confirmed")
    changed = AuditEvent.objects.get(
        event_type="user.changed", subject_id=str(approvers["lead"].pk)
    )
    assert changed.payload["after"]["slack_user_id"] == LEAD

    interact(_approve(buttons))
    request.refresh_from_db()
    assert request.status == Status.APPROVED


def test_a_forged_or_expired_link_token_links_nobody(fake_slack, approvers, settings):
    browser = client_for(approvers["lead"])
    token = slack_services.link_token(slack_user_id="U0OTHER", team_id="T0FAKE")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    browser.post(reverse("slack:link"), {"token": forged})
    assert not SlackLink.objects.exists()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(slack_services, "LINK_MAX_AGE_SECONDS", -1)
        page = browser.post(reverse("slack:link"), {"token": token})
    assert b"not valid any more" in page.content
    assert not SlackLink.objects.exists()


def test_a_slack_user_with_a_confirmed_email_is_linked_by_it(
    fake_slack, posted, interact, approvers
):
    lead = approvers["lead"]
    lead.email = "Lead@Example.com"
    lead.save(update_fields=["email"])
    fake_slack.add_user(LEAD, "lead@example.com")
    request, buttons = posted()
    interact(_approve(buttons))
    link = SlackLink.objects.get()
    assert (link.user, link.method) == (lead, LinkMethod.EMAIL)
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert fake_slack.calls_of("users.info") == [{"user": LEAD}]


@pytest.mark.parametrize("case", ["unconfirmed", "shared address", "off"])
def test_an_email_that_is_not_safe_to_trust_links_nobody(
    fake_slack, posted, interact, approvers, settings, case
):
    lead = approvers["lead"]
    lead.email = "lead@example.com"
    lead.save(update_fields=["email"])
    fake_slack.add_user(LEAD, "lead@example.com", confirmed=case != "unconfirmed")
    if case == "shared address":
        approvers["em"].email = "LEAD@example.com"
        approvers["em"].save(update_fields=["email"])
    if case == "off":
        settings.OVERSIGHT_SLACK_LINK_BY_EMAIL = False
    request, buttons = posted()
    interact(_approve(buttons))
    assert not SlackLink.objects.exists()
    request.refresh_from_db()
    assert request.status == Status.PENDING
    (reply,) = _replies(fake_slack)
    assert "not linked" in reply["text"]


def test_reject_opens_a_modal_and_its_submission_rejects_with_the_reason(
    fake_slack, posted, linked, interact, approvers
):
    linked()
    request, buttons = posted()
    click = block_action(
        "oversight_reject", buttons["oversight_reject"]["value"], user=LEAD, trigger="1337.42"
    )
    assert interact(click).status_code == 200
    (opened,) = fake_slack.calls_of("views.open")
    assert opened["trigger_id"] == "1337.42"
    assert opened["view"]["callback_id"] == "oversight_reject_modal"
    request.refresh_from_db()
    assert request.status == Status.PENDING, "a click on Reject only asks for the reason"

    empty = interact(reject_submission(str(request.pk), "  ", user=LEAD))
    assert empty.json()["response_action"] == "errors"
    assert "Say why" in empty.json()["errors"]["reason"]

    done = interact(reject_submission(str(request.pk), "Not during the freeze.", user=LEAD))
    assert done.status_code == 200
    assert done.content == b""
    request.refresh_from_db()
    assert request.status == Status.REJECTED
    assert request.decision_reason == "Not during the freeze."
    assert request.decided_by == approvers["lead"]
    tasks.sweep()
    (updated,) = fake_slack.calls_of("chat.update")
    assert "Rejected* by t-lead: Not during the freeze." in str(updated["blocks"])


def test_a_rejection_by_someone_who_may_not_decide_is_refused_in_the_modal(
    fake_slack, posted, linked, interact
):
    linked()
    request, _ = posted(risk_level="critical")
    answer = interact(reject_submission(str(request.pk), "no", user=LEAD))
    assert answer.json()["response_action"] == "errors"
    assert answer.json()["errors"]["reason"].startswith("Not rejected: This critical-risk request")
    request.refresh_from_db()
    assert request.status == Status.PENDING


def test_a_modal_slack_could_not_open_is_answered_with_the_page(
    fake_slack, posted, linked, interact
):
    linked()
    request, _ = posted()
    interact(block_action("oversight_reject", str(request.pk), user=LEAD, trigger="expired"))
    (reply,) = _replies(fake_slack)
    assert f"/requests/{request.pk}/" in reply["text"]


def test_a_click_on_a_decided_request_says_so(fake_slack, posted, linked, interact, approvers):
    linked()
    request, buttons = posted()
    services.reject_request(request_id=request.pk, reviewer=approvers["em"], reason="no")
    interact(_approve(buttons))
    (reply,) = _replies(fake_slack)
    assert (
        reply["text"]
        == "Not approved: This request is rejected already; final states never change."
    )


def test_a_malformed_payload_is_refused_without_a_500(fake_slack, interact):
    assert interact({"type": "block_actions"}).status_code == 400
    assert (
        interact({"type": "block_actions", "user": {"id": LEAD}, "actions": []}).status_code == 400
    )


def test_interactions_are_refused_when_slack_is_off(fake_slack, settings, interact):
    settings.OVERSIGHT_SLACK_SIGNING_SECRET = ""
    assert interact({"type": "block_actions"}).status_code == 404


def test_replies_older_than_anyone_waits_for_are_dropped(fake_slack):
    from datetime import timedelta

    from django.utils import timezone

    item = delivery.reply(channel_id="C0LEADS", slack_user_id=LEAD, text="late")
    SlackDelivery.objects.filter(pk=item.pk).update(created_at=timezone.now() - timedelta(hours=1))
    tasks.sweep()
    assert SlackDelivery.objects.get(pk=item.pk).status == "skipped"
    assert fake_slack.calls_of("chat.postEphemeral") == []
    assert SlackDelivery.objects.get(pk=item.pk).kind == CallKind.REPLY


def _link_token_for(fake_slack, buttons, interact, slack_user):
    interact(_approve(buttons, user=slack_user))
    reply = _replies(fake_slack)[-1]
    url = reply["text"].split("<", 1)[1].split("|", 1)[0]
    return parse_qs(urlsplit(url).query)["token"][0]


def test_a_link_passed_on_to_someone_else_links_nobody(fake_slack, posted, interact, approvers):
    """Review finding: an unlinked Slack user sends their link to a director, who confirms; the
    Slack account must not come to act as the director."""
    director = approvers["director"]
    director.email = "director@example.com"
    director.save(update_fields=["email"])
    request, buttons = posted()
    token = _link_token_for(fake_slack, buttons, interact, "UATTACK")
    fake_slack.add_user("UATTACK", "mallory@example.com")
    page = client_for(director).post(reverse("slack:link"), {"token": token})
    assert page.status_code == 400
    assert b"not yours" in page.content
    assert not SlackLink.objects.exists()
    interact(_approve(buttons, user="UATTACK"))
    request.refresh_from_db()
    assert request.status == Status.PENDING


@pytest.mark.parametrize("case", ["unconfirmed", "unknown to Slack", "bot"])
def test_a_confirmation_slack_does_not_vouch_for_links_nobody(
    fake_slack, posted, interact, approvers, case
):
    lead = approvers["lead"]
    _request, buttons = posted()
    token = _link_token_for(fake_slack, buttons, interact, "U0NEW")
    if case != "unknown to Slack":
        fake_slack.add_user("U0NEW", lead.email, confirmed=case != "unconfirmed")
    if case == "bot":
        fake_slack.users["U0NEW"]["is_bot"] = True
    page = client_for(lead).post(reverse("slack:link"), {"token": token})
    assert page.status_code == 400
    assert not SlackLink.objects.exists()


def test_a_confirmation_never_re_points_an_existing_link(
    fake_slack, posted, interact, approvers, linked
):
    lead = approvers["lead"]
    linked()  # the lead acts in Slack as U0LEAD already
    _request, buttons = posted()
    token = _link_token_for(fake_slack, buttons, interact, "U0SECOND")
    fake_slack.add_user("U0SECOND", lead.email)
    page = client_for(lead).post(reverse("slack:link"), {"token": token})
    assert page.status_code == 400
    assert b"unlink it first" in page.content
    assert list(SlackLink.objects.values_list("slack_user_id", flat=True)) == [LEAD]


@pytest.mark.parametrize("shape", [{"user": "U0LEAD"}, {"team": "T1"}, {"channel": "C1"}])
def test_a_signed_payload_of_an_unexpected_shape_is_refused_without_a_500(
    fake_slack, posted, linked, interact, shape
):
    linked()
    _request, buttons = posted()
    answer = interact({**_approve(buttons), **shape})
    assert answer.status_code == 400
