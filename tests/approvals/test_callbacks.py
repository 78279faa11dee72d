"""Signed callbacks through the transactional outbox, delivered by a real Celery worker."""

from __future__ import annotations

import json
import signal

import pytest
from django.db import transaction
from django.utils import timezone

from approvals import services, tasks
from approvals.models import CallbackDelivery
from oversight.outbox import DeliveryStatus
from tests import live
from tests.receivers import signature

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
    assert sent["headers"]["X-Oversight-Signature"] == signature(created.agent.webhook_secret, sent)
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
