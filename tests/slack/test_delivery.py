"""Requests posted to Slack and their messages updated in place, through the outbox, against
the fake Slack Web API (a real HTTP server on loopback)."""

from __future__ import annotations

import pytest
from django.db import connections, transaction
from django.urls import reverse
from django.utils import timezone

from approvals import services
from approvals.models import Status
from oversight.outbox import DeliveryStatus
from slack import delivery, tasks
from slack.models import CallKind, SlackDelivery, SlackMessage
from tests.conftest import client_for, shift_into_past
from tests.support.slack import TOKEN

pytestmark = pytest.mark.django_db


def _actions(content: dict) -> list[dict]:
    return [b for b in content["blocks"] if b["type"] == "actions"]


def _text(content: dict) -> str:
    return str(content["blocks"])


def test_a_new_request_is_posted_to_its_first_tiers_channel(fake_slack, new_request):
    request = new_request(risk_level="medium")  # route: team lead, then engineering manager
    assert tasks.sweep() == 1
    (posted,) = fake_slack.calls_of("chat.postMessage")
    assert posted["channel"] == "C0LEADS"
    assert fake_slack.calls[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert "write_file" in posted["text"]
    (actions,) = _actions(posted)
    approve, reject, open_ = actions["elements"]
    assert approve["value"] == f"{request.pk}:{request.current_params_sha256}"
    assert reject["value"] == str(request.pk)
    assert open_["url"] == f"https://oversight.example/requests/{request.pk}/"
    for shown in ("medium", "normal", "Ship the fix for the login outage.", '"service": "api"'):
        assert shown in _text(posted), shown
    message = SlackMessage.objects.get(request=request)
    assert (message.channel_id, message.ts) in fake_slack.messages
    assert SlackDelivery.objects.get(kind=CallKind.POST).status == DeliveryStatus.DELIVERED


def test_what_the_agent_wrote_cannot_mention_anyone_or_link_anywhere(fake_slack, new_request):
    new_request(
        justification="<!channel> see <https://evil.example|the docs> & more",
        params={"cmd": "```<@U0BOSS>```"},
    )
    tasks.sweep()
    (posted,) = fake_slack.calls_of("chat.postMessage")
    shown = _text(posted)
    for raw in ("<!channel>", "<https://evil", "<@U0BOSS>"):
        assert raw not in shown
    assert "&lt;!channel&gt; see &lt;https://evil.example|the docs&gt; &amp; more" in shown


def test_an_approval_in_the_browser_updates_the_slack_message(fake_slack, new_request, approvers):
    request = new_request()
    tasks.sweep()
    message = SlackMessage.objects.get(request=request)
    response = client_for(approvers["lead"]).post(
        reverse("approvals:approve", args=[request.pk]),
        {"comment": "", "seen_params_sha256": request.current_params_sha256},
    )
    assert response.status_code in (200, 302), response.content[:500]
    request.refresh_from_db()
    assert request.status == Status.APPROVED
    assert tasks.sweep() == 1
    (updated,) = fake_slack.calls_of("chat.update")
    assert (updated["channel"], updated["ts"]) == (message.channel_id, message.ts)
    assert _actions(updated) == [], "no buttons once final"
    assert "Approved* by t-lead" in _text(updated)
    assert fake_slack.messages[(message.channel_id, message.ts)] == updated


def test_an_escalation_updates_the_message_and_posts_to_the_next_tier(fake_slack, new_request):
    request = new_request(risk_level="medium")
    tasks.sweep()
    shift_into_past(request.pk, 3 * 3600)  # past half-time of its 4 hours
    assert services.escalate_request(request_id=request.pk)
    assert tasks.sweep() == 2
    updates = fake_slack.calls_of("chat.update")
    assert "C0LEADS" in {update["channel"] for update in updates}
    for update in updates:
        assert "Escalated to Engineering manager" in _text(update)
        assert _actions(update), "still pending: the buttons stay"
    channels = [call["channel"] for call in fake_slack.calls_of("chat.postMessage")]
    assert channels == ["C0LEADS", "C0EMS"]
    assert SlackMessage.objects.filter(request=request).count() == 2


def test_an_expiry_updates_every_message_of_the_request(fake_slack, new_request):
    request = new_request(risk_level="medium")
    tasks.sweep()
    shift_into_past(request.pk, 3 * 3600)
    services.escalate_request(request_id=request.pk)
    tasks.sweep()
    shift_into_past(request.pk, 3600)
    assert services.expire_request(request_id=request.pk)
    tasks.sweep()
    updates = fake_slack.calls_of("chat.update")[-2:]
    assert sorted(u["channel"] for u in updates) == ["C0EMS", "C0LEADS"]
    for update in updates:
        assert "Expired" in _text(update)
        assert _actions(update) == []


def test_a_rolled_back_change_writes_nothing_and_sends_nothing(fake_slack, new_request, approvers):
    with pytest.raises(RuntimeError), transaction.atomic():
        new_request()
        raise RuntimeError("rolled back")
    assert not SlackDelivery.objects.exists()
    request = new_request()
    tasks.sweep()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        raise RuntimeError("rolled back")
    assert not SlackDelivery.objects.filter(kind=CallKind.UPDATE).exists()
    assert tasks.sweep() == 0
    assert fake_slack.calls_of("chat.update") == []


def test_failed_calls_are_retried_with_backoff(fake_slack, new_request):
    fake_slack.failing = True
    request = new_request()
    assert tasks.sweep() == 1
    item = SlackDelivery.objects.get(request=request)
    assert item.status == DeliveryStatus.PENDING
    assert item.attempts == 1
    assert item.last_error == "chat.postMessage: HTTP 500"
    assert item.next_attempt_at > timezone.now()
    assert tasks.sweep() == 0, "not due again before its backoff"
    fake_slack.failing = False
    SlackDelivery.objects.filter(pk=item.pk).update(next_attempt_at=timezone.now())
    assert tasks.sweep() == 1
    item.refresh_from_db()
    assert item.status == DeliveryStatus.DELIVERED
    assert item.last_error == ""
    assert SlackMessage.objects.filter(request=request).exists()


def test_a_wrong_token_is_a_failure_not_a_delivery(fake_slack, settings, new_request):
    settings.OVERSIGHT_SLACK_BOT_TOKEN = "xoxb-wrong"
    new_request()
    tasks.sweep()
    item = SlackDelivery.objects.get()
    assert item.status == DeliveryStatus.PENDING
    assert item.last_error == "chat.postMessage: invalid_auth"


def test_a_request_decided_before_it_was_posted_is_not_posted(fake_slack, new_request, approvers):
    request = new_request()
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    tasks.sweep()
    assert fake_slack.calls_of("chat.postMessage") == []
    statuses = dict(SlackDelivery.objects.values_list("kind", "status"))
    assert statuses == {
        CallKind.POST: DeliveryStatus.SKIPPED,
        CallKind.UPDATE: DeliveryStatus.DELIVERED,
    }
    assert fake_slack.calls_of("chat.update") == [], "there was no message to update"


def test_nothing_is_written_when_slack_is_off(fake_slack, settings, new_request, approvers):
    settings.OVERSIGHT_SLACK_BOT_TOKEN = ""
    request = new_request()
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert not SlackDelivery.objects.exists()


def test_a_tier_without_a_channel_is_not_posted(fake_slack, new_request, approvers):
    from slack.models import SlackChannel

    SlackChannel.objects.filter(tier="team_lead").delete()
    delivery.forget_channels()
    request = new_request(risk_level="medium")
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert not SlackDelivery.objects.exists(), "never posted, so nothing to update either"


@pytest.mark.django_db(transaction=True)
def test_a_decision_made_while_the_post_was_in_flight_is_shown_after_it(
    fake_slack, new_request, approvers
):
    """The post is composed (pending), the request is approved before the post is recorded:
    the update that decision wrote found no message yet, so recording the post makes one."""
    request = new_request()
    decided_meanwhile: list[object] = []

    def approve_in_flight(method: str) -> None:
        if method == "chat.postMessage" and not decided_meanwhile:
            # In the fake's thread, with a connection of its own: committed at once.
            services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
            decided_meanwhile.append(True)
            # The decision's update is sent now, before the post is recorded: no message yet.
            delivery.deliver(SlackDelivery.objects.get(request=request, kind=CallKind.UPDATE).pk)
            connections.close_all()  # this thread's own connection

    fake_slack.before_answer = approve_in_flight
    tasks.sweep()
    assert decided_meanwhile
    assert fake_slack.calls_of("chat.update") == []
    tasks.sweep()  # the update recording the post made
    (updated,) = fake_slack.calls_of("chat.update")
    assert "Approved" in _text(updated)
    assert _actions(updated) == []


def test_pausing_the_agent_redraws_its_messages_frozen_and_resuming_redraws_the_buttons(
    fake_slack, new_request, make_user
):
    from agents import services as agents

    request = new_request()
    tasks.sweep()
    message = SlackMessage.objects.get(request=request)
    manager = make_user("m-slack", roles=("manager",))
    agents.set_agent_status(
        agent=request.agent, status="paused", reason="odd spending", actor=manager
    )
    assert tasks.sweep() == 1
    (frozen,) = fake_slack.calls_of("chat.update")
    assert (frozen["channel"], frozen["ts"]) == (message.channel_id, message.ts)
    (actions,) = _actions(frozen)
    assert [button["action_id"] for button in actions["elements"]] == ["oversight_open"]
    assert "is paused (odd spending); no vote until it runs again" in _text(frozen)
    agents.set_agent_status(agent=request.agent, status="active", actor=manager)
    assert tasks.sweep() == 1
    resumed = fake_slack.calls_of("chat.update")[-1]
    (actions,) = _actions(resumed)
    assert len(actions["elements"]) == 3
    assert "Frozen" not in _text(resumed)
