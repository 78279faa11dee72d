"""Callbacks cannot jam the outbox (SPEC §9.6): each attempt ends at its deadline whatever the
receiver does, it is counted before it is sent, a sweep ends in bounded time, a task's time
limit leaves the row sane, and what fails for good is told to people and can be retried."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from approvals import services, tasks
from approvals.models import CallbackAlertEmail, CallbackDelivery
from oversight import outbox
from oversight.outbox import DeliveryStatus
from tests.support.peers import Peer, soft_time_limit

pytestmark = pytest.mark.django_db

DEADLINE = 2.0


@pytest.fixture(autouse=True)
def _short_deadline(settings: Any) -> None:
    settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS = DEADLINE


@pytest.fixture
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    server = Peer(request.param)
    yield server
    server.close()


def _decided_with_callback(new_request: Any, approvers: Any, url: str) -> CallbackDelivery:
    request = new_request(callback_url=url)
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    return CallbackDelivery.objects.get(request=request)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("peer", "outcome"),
    [
        ("hang", DeliveryStatus.PENDING),
        ("drip_headers", DeliveryStatus.PENDING),
        ("hang_after_headers", DeliveryStatus.DELIVERED),  # the status line came: 200
        ("drip_body", DeliveryStatus.DELIVERED),
        ("endless", DeliveryStatus.DELIVERED),
        ("reset", DeliveryStatus.PENDING),
    ],
    indirect=["peer"],
)
def test_a_misbehaving_receiver_holds_an_attempt_no_longer_than_its_deadline(
    peer, outcome, new_request, approvers
):
    delivery = _decided_with_callback(new_request, approvers, peer.url)
    started = time.monotonic()
    assert tasks.sweep_callbacks() == 1
    elapsed = time.monotonic() - started
    assert elapsed <= DEADLINE + 1, f"the attempt took {elapsed:.2f} s"
    delivery.refresh_from_db()
    assert delivery.status == outcome
    assert delivery.attempts == 1
    attempt = delivery.attempt_log.get()
    assert attempt.duration_ms <= (DEADLINE + 1) * 1000
    if outcome == DeliveryStatus.PENDING:
        assert attempt.status_code is None
        assert delivery.next_attempt_at > timezone.now(), "retried later, with backoff"
    else:
        assert attempt.status_code == 200
    if peer.behaviour in ("hang", "drip_headers"):
        assert attempt.error.startswith("DeadlineExceeded: 127.0.0.1 gave no answer within 2 s")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("peer", ["hang"], indirect=True)
def test_a_sweep_stops_taking_rows_in_time_and_leaves_the_rest_for_the_next(
    peer, new_request, approvers, monkeypatch
):
    monkeypatch.setattr(outbox, "SWEEP_SECONDS", 1.5, raising=False)
    deliveries = [_decided_with_callback(new_request, approvers, peer.url) for _ in range(6)]
    started = time.monotonic()
    tried = tasks.sweep_callbacks()
    elapsed = time.monotonic() - started
    # The first row hangs to its 2 s deadline; by then the sweep's 1.5 s are over.
    assert tried == 1
    assert elapsed <= 1.5 + DEADLINE + 1
    attempts = sorted(
        CallbackDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list(
            "attempts", flat=True
        )
    )
    assert attempts == [0, 0, 0, 0, 0, 1]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("peer", ["hang"], indirect=True)
def test_a_time_limit_in_mid_send_leaves_the_attempt_counted_and_stops_the_sweep(
    peer, new_request, approvers, settings
):
    settings.OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS = 10  # the task's limit comes first
    first, second = (_decided_with_callback(new_request, approvers, peer.url) for _ in range(2))
    started = time.monotonic()
    with pytest.raises(SoftTimeLimitExceeded), soft_time_limit(0.5):
        tasks.sweep_callbacks()
    assert time.monotonic() - started < 2, "the sweep stopped; it did not go on to the next row"
    rows = {d.pk: d for d in CallbackDelivery.objects.filter(pk__in=[first.pk, second.pk])}
    taken = next(d for d in rows.values() if d.attempts)
    untouched = next(d for d in rows.values() if not d.attempts)
    assert taken.status == DeliveryStatus.PENDING
    assert taken.attempts == 1
    assert taken.lease_until is None
    assert taken.next_attempt_at > timezone.now()
    assert taken.attempt_log.get().error == "stopped at the task's time limit"
    assert untouched.attempt_log.count() == 0


def test_backoff_doubles_from_10_s_to_an_hour_and_gives_up_after_about_a_day():
    delays = [outbox.backoff(n).total_seconds() for n in range(1, outbox.OutboxItem.MAX_ATTEMPTS)]
    assert delays[:4] == [10, 20, 40, 80]
    assert max(delays) == 3600
    last_attempt_after = timedelta(seconds=sum(delays))
    assert timedelta(hours=23) <= last_attempt_after <= timedelta(hours=25)


def test_a_row_whose_worker_is_killed_at_every_attempt_ends_failed_and_alerted(
    new_request, approvers
):
    """Taking the lease counts the attempt (what the killed worker left), so the row's last
    lease runs out into a dead letter rather than another attempt."""
    delivery = _decided_with_callback(new_request, approvers, "http://127.0.0.1:9/hook")
    # Every attempt but the last taken and never reported back (the worker killed mid-send).
    for _ in range(outbox.OutboxItem.MAX_ATTEMPTS):
        assert outbox.take_lease(CallbackDelivery, delivery.pk) is not None
        CallbackDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now(), lease_until=timezone.now() - timedelta(seconds=1)
        )
    assert tasks.sweep_callbacks() == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == outbox.OutboxItem.MAX_ATTEMPTS
    assert CallbackAlertEmail.objects.filter(agent=delivery.request.agent).exists()
