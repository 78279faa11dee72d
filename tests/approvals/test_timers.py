"""Timers in one process: tokens, the hand-over of near deadlines, the overdue sweep, and their
races (real transactions and threads). The real worker and beat are in test_timers_live.py."""

from __future__ import annotations

import functools
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import deadlines, effects, tasks, timers
from approvals.models import ApprovalRequest, Status
from approvals.representation import represent
from audit.models import AuditEvent
from tests.approvals.test_races import run_together
from tests.conftest import shift_into_past

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(monkeypatch):
    """What the timers hand to the broker. The broker itself is exercised by the live tests;
    here ETA messages would only linger in Redis for later tests' workers."""
    sent: list[deadlines.Timer] = []
    monkeypatch.setattr(effects, "queue_timers", lambda due: sent.extend(due))
    return sent


def events(request_id, event_type: str) -> int:
    return AuditEvent.objects.filter(subject_id=str(request_id), event_type=event_type).count()


def test_creation_hands_over_only_the_deadlines_within_the_horizon(new_request, queued):
    near = new_request(timeout_seconds=20)
    far = new_request(urgency="low")
    assert [(t.kind, t.request_id, t.at) for t in queued] == [
        (deadlines.ESCALATE, str(near.pk), near.escalates_at),
        (deadlines.EXPIRE, str(near.pk), near.expires_at),
    ]
    assert all(t.token == str(near.timer_token) for t in queued)
    assert far.timers_queued_until == far.created_at + timedelta(seconds=60)


def test_the_tick_hands_each_deadline_over_once_as_it_comes_near(new_request, queued):
    request = new_request(timeout_seconds=300)  # escalates at +150 s, expires at +300 s
    start = request.created_at
    assert queued == []
    assert timers.hand_over(start + timedelta(seconds=30)) == 0
    assert timers.hand_over(start + timedelta(seconds=100)) == 1
    assert timers.hand_over(start + timedelta(seconds=100)) == 0
    assert timers.hand_over(start + timedelta(seconds=120)) == 0
    assert timers.hand_over(start + timedelta(seconds=250)) == 1
    assert timers.hand_over(start + timedelta(seconds=290)) == 0
    assert [(t.kind, t.at) for t in queued] == [
        (deadlines.ESCALATE, request.escalates_at),
        (deadlines.EXPIRE, request.expires_at),
    ]


def test_overlapping_hand_overs_queue_each_deadline_once(new_request, queued):
    requests = [new_request(timeout_seconds=300) for _ in range(20)]
    for later in (timedelta(seconds=100), timedelta(seconds=250)):
        moment = requests[-1].created_at + later
        run_together([functools.partial(timers.hand_over, moment)] * 6)
    kinds = sorted((t.request_id, t.kind) for t in queued)
    expected = sorted(
        (str(r.pk), kind) for r in requests for kind in (deadlines.ESCALATE, deadlines.EXPIRE)
    )
    assert kinds == expected


def test_deadlines_already_past_are_left_to_the_sweep(new_request, queued):
    request = new_request(timeout_seconds=300)
    assert timers.hand_over(request.created_at + timedelta(seconds=250)) == 1
    assert [t.kind for t in queued] == [deadlines.EXPIRE]


def test_a_decided_request_is_not_handed_over(new_request, approvers, queued):
    from approvals import services

    request = new_request(timeout_seconds=300)
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    assert timers.hand_over(request.created_at + timedelta(seconds=250)) == 0


def test_a_timer_task_whose_token_no_longer_matches_does_nothing(new_request):
    request = new_request(timeout_seconds=600)
    shift_into_past(request.pk, 301)  # half-time has passed
    tasks.escalate_on_time(str(request.pk), str(uuid.uuid4()))
    assert ApprovalRequest.objects.get(pk=request.pk).escalated_at is None
    tasks.escalate_on_time(str(request.pk), str(request.timer_token))
    assert ApprovalRequest.objects.get(pk=request.pk).escalated_at is not None
    assert events(request.pk, "request.escalated") == 1


def test_a_timer_task_for_a_decided_request_does_nothing(new_request, approvers):
    from approvals import services

    request = new_request(timeout_seconds=600)
    token = str(request.timer_token)
    services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")
    shift_into_past(request.pk, 601)
    tasks.expire_on_time(str(request.pk), token)
    tasks.escalate_on_time(str(request.pk), token)
    request.refresh_from_db()
    assert request.status == Status.REJECTED
    assert request.escalated_at is None


def test_a_timer_task_that_arrives_early_waits_for_its_deadline(new_request):
    request = new_request(timeout_seconds=600)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        escalates_at=timezone.now() + timedelta(seconds=0.4)
    )
    tasks.escalate_on_time(str(request.pk), str(request.timer_token))
    request.refresh_from_db()
    assert request.escalated_at is not None
    assert request.escalated_at >= request.escalates_at


def test_the_sweep_expires_overdue_requests_once_with_their_missed_escalation(new_request):
    overdue = new_request(timeout_seconds=60)
    half = new_request(timeout_seconds=60)
    waiting = new_request(timeout_seconds=60)
    shift_into_past(overdue.pk, 61)
    shift_into_past(half.pk, 31)
    assert timers.sweep() == (1, 1)
    assert timers.sweep() == (0, 0)
    overdue.refresh_from_db()
    half.refresh_from_db()
    assert overdue.status == Status.EXPIRED
    assert overdue.escalated_at is not None  # caught up, and audited, before the expiry
    assert (events(overdue.pk, "request.escalated"), events(overdue.pk, "request.expired")) == (
        1,
        1,
    )
    assert half.status == Status.PENDING
    assert half.current_tier == "engineering_manager"
    assert events(half.pk, "request.escalated") == 1
    assert ApprovalRequest.objects.get(pk=waiting.pk).escalated_at is None


def test_a_late_sweep_dates_the_expiry_at_the_deadline_as_every_read_did(new_request):
    """An hour late (worker and beat down): the request still expired at its deadline. Its
    escalation, missed meanwhile, is dated then too, never after the expiry; the audit events
    record when the sweep caught up."""
    request = new_request(timeout_seconds=60)
    shift_into_past(request.pk, 60 + 3600)
    request.refresh_from_db()
    before = represent(request, votes=[])
    assert before["status"] == "expired"

    assert timers.sweep() == (0, 1)
    request.refresh_from_db()
    after = represent(request, votes=[])
    assert request.decided_at == request.expires_at
    assert after["decision"]["decided_at"] == before["decision"]["decided_at"]
    assert request.escalated_at == request.expires_at
    recorded = AuditEvent.objects.get(subject_id=str(request.pk), event_type="request.expired")
    assert recorded.occurred_at - request.expires_at > timedelta(hours=1)


def test_concurrent_sweeps_change_each_request_once(new_request):
    requests = [new_request(timeout_seconds=60) for _ in range(12)]
    for request in requests[:6]:
        shift_into_past(request.pk, 61)
    for request in requests[6:]:
        shift_into_past(request.pk, 31)
    results = run_together([timers.sweep] * 4)
    assert sum(escalated for escalated, _ in results) == 6
    assert sum(expired for _, expired in results) == 6
    for request in requests:
        assert events(request.pk, "request.escalated") == 1
    assert sum(events(r.pk, "request.expired") for r in requests) == 6


def test_escalation_and_expiry_update_open_inboxes_live(new_request, approvers):
    from asgiref.sync import async_to_sync, sync_to_async

    from approvals import services
    from tests.approvals.test_consumers import connect, session_cookie

    cookie = session_cookie(approvers["em"])  # the tier a medium request escalates to

    async def scenario():
        communicator, connected, _ = await connect(cookie)
        assert connected
        request = await sync_to_async(new_request)(risk_level="medium", timeout_seconds=600)
        row = f'id="request-{request.pk}"'
        assert row in await communicator.receive_from(timeout=5)
        await sync_to_async(shift_into_past)(request.pk, 301)
        assert await sync_to_async(services.escalate_request)(request_id=request.pk)
        pushed = await communicator.receive_from(timeout=5)
        assert row in pushed
        assert "escalated" in pushed
        await sync_to_async(shift_into_past)(request.pk, 300)
        assert await sync_to_async(services.expire_request)(request_id=request.pk)
        dropped = await communicator.receive_from(timeout=5)
        assert f'data-inbox-row="request-{request.pk}"' in dropped
        assert row not in dropped  # an empty row: the page drops it
        await communicator.disconnect()

    async_to_sync(scenario)()
