"""Callbacks that failed for good (dead letters): the agent's owner and the managers are told by
email, the request's page shows it, and an admin can send it again, audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from approvals import callbacks, services, tasks
from approvals.models import CallbackAlertEmail, CallbackDelivery
from audit.models import AuditEvent
from oversight.outbox import DeliveryStatus, OutboxItem
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def watchers(make_user: Any) -> dict[str, Any]:
    people = {
        "owner": make_user("bot-owner", roles=("approver",), tier="team_lead"),
        "manager": make_user("ops-manager", roles=("manager",)),
        "approver": make_user("other-approver", roles=("approver",), tier="director"),
    }
    root = make_user("root-admin", roles=("admin",))
    root.is_superuser = True
    root.save()
    people["root"] = root
    for user in people.values():
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return people


def _dead_letter(new_request: Any, approvers: Any, agent: Any, url: str) -> CallbackDelivery:
    """A decided request whose callback is failing, on its last attempt, then failed."""
    request = new_request(agent=agent, callback_url=url)
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    CallbackDelivery.objects.filter(request=request).update(attempts=OutboxItem.MAX_ATTEMPTS - 1)
    tasks.sweep_callbacks()
    return CallbackDelivery.objects.get(request=request)


@pytest.fixture
def failing(receiver: Any) -> Any:
    receiver.status = 500
    return receiver


def test_a_callback_failing_at_its_last_attempt_is_dead_lettered_and_alerted_once_an_hour(
    failing, new_request, approvers, make_agent, watchers, mailoutbox, settings
):
    settings.OVERSIGHT_BASE_URL = "https://oversight.example.com"
    agent = make_agent("deploy-bot", owner=watchers["owner"]).agent
    first = _dead_letter(new_request, approvers, agent, failing.url)
    second = _dead_letter(new_request, approvers, agent, failing.url)
    assert first.status == second.status == DeliveryStatus.FAILED
    assert first.attempts == OutboxItem.MAX_ATTEMPTS
    assert CallbackAlertEmail.objects.filter(agent=agent).count() == 1, "one email an hour"

    tasks.sweep_emails()  # the requests' own emails are skipped: they were decided
    assert CallbackAlertEmail.objects.get(agent=agent).status == DeliveryStatus.DELIVERED
    (message,) = mailoutbox
    assert sorted(message.to) == [
        "bot-owner@example.com",
        "ops-manager@example.com",
        "root-admin@example.com",
    ]
    assert message.subject == "[Oversight] Callbacks failed for good: agent deploy-bot"
    body = message.body
    for delivery in (first, second):  # both listed, with where, how often and why
        assert f"https://oversight.example.com/requests/{delivery.request_id}/" in body
    assert body.count(f"{failing.url}: {OutboxItem.MAX_ATTEMPTS} attempts, the last: HTTP 500") == 2
    assert "GET /api/v1/approval-requests/{id}" in body
    assert (
        "https://oversight.example.com/admin/approvals/callbackdelivery/"
        "?status__exact=failed&q=deploy-bot" in body
    )
    assert tasks.sweep_emails() == 0, "sent once"


def test_an_alert_whose_dead_letters_were_all_retried_meanwhile_is_not_sent(
    failing, new_request, approvers, make_agent, watchers, mailoutbox
):
    agent = make_agent("retried-bot").agent
    delivery = _dead_letter(new_request, approvers, agent, failing.url)
    callbacks.retry_callback(delivery_id=delivery.pk, actor=watchers["manager"])
    tasks.sweep_emails()
    assert mailoutbox == []
    assert CallbackAlertEmail.objects.get(agent=agent).status == DeliveryStatus.SKIPPED


def test_the_request_page_says_the_agent_was_not_told(
    failing, new_request, approvers, make_agent, watchers
):
    delivery = _dead_letter(new_request, approvers, make_agent().agent, failing.url)
    page = client_for(watchers["manager"]).get(f"/requests/{delivery.request_id}/")
    html = page.content.decode()
    assert "failed for good" in html
    assert "HTTP 500" in html
    assert "an admin can retry it" in html
    admin_page = client_for(watchers["root"]).get(f"/requests/{delivery.request_id}/")
    assert "/admin/approvals/callbackdelivery/?status__exact=failed" in admin_page.content.decode()


def test_an_admin_retries_a_dead_letter_from_the_admin_and_it_is_audited_and_sent(
    failing, new_request, approvers, make_agent, watchers
):
    delivery = _dead_letter(new_request, approvers, make_agent().agent, failing.url)
    pending = new_request(callback_url=failing.url)
    services.reject_request(request_id=pending.pk, reviewer=approvers["lead"], reason="no")
    still_pending = CallbackDelivery.objects.get(request=pending)

    response = client_for(watchers["root"]).post(
        "/admin/approvals/callbackdelivery/",
        {"action": "retry", "_selected_action": [delivery.pk, still_pending.pk]},
        follow=True,
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Retrying 1 callback(s) now." in html
    assert "not failed for good: there is nothing to retry" in html

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 0
    assert delivery.next_attempt_at <= timezone.now()
    event = AuditEvent.objects.get(event_type="callback.retried")
    assert (event.actor_name, event.subject_type, event.subject_id) == (
        "root-admin",
        "callback_delivery",
        str(delivery.pk),
    )
    assert event.payload == {
        "request_id": str(delivery.request_id),
        "url": delivery.url,
        "failed_attempts": OutboxItem.MAX_ATTEMPTS,
    }

    failing.status = 204  # the agent's endpoint is fixed
    tasks.sweep_callbacks()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_only_managers_and_admins_retry_and_only_what_failed_for_good(
    failing, new_request, approvers, make_agent, watchers
):
    delivery = _dead_letter(new_request, approvers, make_agent().agent, failing.url)
    with pytest.raises(PermissionDenied):
        callbacks.retry_callback(delivery_id=delivery.pk, actor=watchers["approver"])
    callbacks.retry_callback(delivery_id=delivery.pk, actor=watchers["manager"])
    with pytest.raises(callbacks.NotDeadLettered):
        callbacks.retry_callback(delivery_id=delivery.pk, actor=watchers["manager"])
    assert AuditEvent.objects.filter(event_type="callback.retried").count() == 1
