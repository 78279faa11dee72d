"""Signed callbacks through the transactional outbox, delivered by a real Celery worker."""

from __future__ import annotations

import json
import signal
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from agents import services as agents
from agents.models import Agent
from approvals import services, tasks
from approvals.models import CallbackDelivery
from oversight.outbox import DeliveryStatus
from oversight_client import InvalidSignature, verify_callback
from tests.support import live
from tests.support.peers import Peer
from tests.support.receivers import signature

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_decision_is_posted_signed_to_the_callback_url(
    celery_worker_process, receiver, new_request, make_agent, approvers
):
    created = make_agent()
    request = new_request(agent=created.agent, callback_url=receiver.url)
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    live.wait_until(lambda: receiver.received, timeout=15)
    sent = receiver.received[0]
    body = json.loads(sent["body"])
    assert body["id"] == str(request.pk)
    assert body["status"] == "approved"
    assert sent["headers"]["X-Oversight-Signature"] == signature(created.webhook_secret, sent)
    delivery = live.wait_until(
        lambda: CallbackDelivery.objects.filter(
            request=request, status=DeliveryStatus.DELIVERED
        ).first()
    )
    assert delivery.attempt_log.count() == 1


def test_a_rolled_back_decision_sends_nothing(receiver, new_request, approvers):
    request = new_request(callback_url=receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        raise RuntimeError("rolled back")
    assert not CallbackDelivery.objects.filter(request=request).exists()
    assert tasks.sweep_callbacks() == 0
    assert receiver.received == []


def test_failures_are_recorded_and_retried_with_backoff(receiver, new_request, approvers):
    receiver.status = 500
    request = new_request(callback_url=receiver.url)
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    delivery = CallbackDelivery.objects.get(request=request)
    assert tasks.sweep_callbacks() == 1  # first attempt: the receiver answers 500
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1
    assert delivery.next_attempt_at > timezone.now()
    assert delivery.attempt_log.get().status_code == 500
    assert tasks.sweep_callbacks() == 0, "not due again before its backoff"
    receiver.status = 204
    CallbackDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert tasks.sweep_callbacks() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 204]


def test_a_callback_survives_a_worker_killed_before_it_ran(
    tmp_path, receiver, new_request, approvers
):
    # No worker is running while the decision commits: the task waits in Redis.
    worker = live.start_worker(tmp_path)
    worker.stop(signal.SIGKILL)
    request = new_request(callback_url=receiver.url)
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert receiver.received == []
    restarted = live.start_worker(tmp_path)
    try:
        live.wait_until(lambda: receiver.received, timeout=20)
    finally:
        restarted.stop()
    assert json.loads(receiver.received[0]["body"])["id"] == str(request.pk)


def test_a_worker_killed_mid_send_has_counted_its_attempt_already(tmp_path, new_request, approvers):
    peer = Peer("hang")
    # A long deadline: the send is surely still in flight when the worker is killed.
    worker = live.start_worker(tmp_path, OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS="30")
    try:
        request = new_request(callback_url=peer.url)
        services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
        live.wait_until(lambda: peer.connections, timeout=20)  # mid-send
        worker.stop(signal.SIGKILL)
    finally:
        worker.stop()
        peer.close()
    delivery = CallbackDelivery.objects.get(request=request)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 1, "counted before it was sent"
    assert delivery.attempt_log.count() == 0, "the killed worker never reported back"
    assert delivery.next_attempt_at > timezone.now(), "due again at its backoff, as a failure"


def test_an_unusable_callback_url_is_recorded_and_does_not_stop_the_others(
    receiver, new_request, approvers
):
    bad = new_request(callback_url="http://example.com/hook")
    good = new_request(callback_url=receiver.url)
    services.reject_request(request_id=bad.pk, reviewer=approvers["lead"], reason="no")
    services.reject_request(request_id=good.pk, reviewer=approvers["lead"], reason="no")
    # As if it had slipped past validation: a host the HTTP client cannot even encode.
    CallbackDelivery.objects.filter(request=bad).update(url="http://xn--a.com/hook")
    assert tasks.sweep_callbacks() == 2
    assert CallbackDelivery.objects.get(request=good).status == DeliveryStatus.DELIVERED
    poisoned = CallbackDelivery.objects.get(request=bad)
    assert poisoned.status == DeliveryStatus.PENDING
    assert poisoned.attempts == 1
    assert poisoned.attempt_log.get().error


# --- rotating the webhook secret (SPEC §9.9) ---------------------------------------------------


def test_during_the_grace_window_callbacks_carry_both_signatures_and_after_it_only_the_new(
    settings, receiver, make_agent, new_request, approvers
):
    settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS = 24
    created = make_agent()
    old = created.webhook_secret
    new = agents.rotate_webhook_secret(agent=created.agent)

    during = new_request(agent=created.agent, callback_url=receiver.url)
    services.reject_request(request_id=during.pk, reviewer=approvers["lead"], reason="no")
    assert tasks.sweep_callbacks() == 1
    sent = receiver.received[-1]
    # New first, then old: a receiver accepts the callback if any one signature matches.
    expected = f"{signature(new, sent)}, {signature(old, sent)}"
    assert sent["headers"]["X-Oversight-Signature"] == expected
    for secret in (new, old):  # the Python client accepts it with either secret
        verify_callback(body=sent["body"], headers=sent["headers"], secret=secret)

    # The window ends (moved into the past rather than waited for).
    Agent.objects.filter(pk=created.agent.pk).update(
        previous_webhook_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    after = new_request(agent=created.agent, callback_url=receiver.url)
    services.reject_request(request_id=after.pk, reviewer=approvers["lead"], reason="no")
    assert tasks.sweep_callbacks() == 1
    sent = receiver.received[-1]
    assert sent["headers"]["X-Oversight-Signature"] == signature(new, sent)
    verify_callback(body=sent["body"], headers=sent["headers"], secret=new)
    with pytest.raises(InvalidSignature):
        verify_callback(body=sent["body"], headers=sent["headers"], secret=old)
