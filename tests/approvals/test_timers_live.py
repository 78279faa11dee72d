"""Timers and emails with the real processes (SPEC §2 Timing, §8, §9.6): a Celery worker and
beat (and the web server) against Redis, started as `make worker` / `make beat` / `make web`.

The processes run with a fast tick (0.5 s), a 4 s horizon and a 10 s visibility timeout, so
that every path (ETA task, hand-over by the tick, sweep, redelivery after a crash) happens
within seconds.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import kombu
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from approvals.models import ApprovalRequest, Status
from audit.models import AuditEvent
from tests.conftest import shift_into_past
from tests.support import live
from tests.support.receivers import Receiver
from tests.support.smtp import SmtpSink

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TIMER_ENV = {
    "OVERSIGHT_TIMER_TICK_SECONDS": "0.5",
    "OVERSIGHT_TIMER_HORIZON_SECONDS": "4",
    "OVERSIGHT_BROKER_VISIBILITY_TIMEOUT": "10",
}


@pytest.fixture(autouse=True)
def _horizon(settings):
    """This process creates requests too: it hands deadlines over as the processes would."""
    settings.OVERSIGHT_TIMER_HORIZON_SECONDS = 4


@pytest.fixture
def procs():
    """Processes to stop after the test; the broker's queue starts empty, so counts of
    received tasks are this test's (earlier tests leave timer messages without a worker)."""
    from oversight.celery import app

    app.control.purge()
    started: list[live.Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def counts(request_id: Any) -> tuple[int, int]:
    """(escalated, expired) audit events of a request."""
    events = AuditEvent.objects.filter(subject_id=str(request_id))
    return (
        events.filter(event_type="request.escalated").count(),
        events.filter(event_type="request.expired").count(),
    )


def recorded_at(request_id: Any, event_type: str) -> datetime:
    return AuditEvent.objects.get(subject_id=str(request_id), event_type=event_type).occurred_at


def all_expired(requests: list[Any]) -> bool:
    ids = [r.pk for r in requests]
    return ApprovalRequest.objects.filter(pk__in=ids, status=Status.EXPIRED).count() == len(ids)


def test_requests_escalate_at_half_time_and_expire_on_time(tmp_path, procs, new_request):
    receiver = Receiver()
    procs.append(live.start_worker(tmp_path, **TIMER_ENV))
    procs.append(live.start_beat(tmp_path, **TIMER_ENV))
    requests = [new_request(timeout_seconds=2 + n % 4) for n in range(12)]
    told = new_request(timeout_seconds=2, callback_url=receiver.url)
    live.wait_until(lambda: all_expired([*requests, told]), timeout=30)
    # Expiry calls the agent back.
    [callback] = live.wait_until(lambda: receiver.received, timeout=15)
    assert json.loads(callback["body"])["status"] == "expired"
    receiver.close()
    late: list[timedelta] = []
    for request in requests:
        request.refresh_from_db()
        assert counts(request.pk) == (1, 1)
        # When each change was made: its audit event (the database's clock). An expired
        # request's decided_at is its deadline, whenever the change was made.
        late.append(recorded_at(request.pk, "request.escalated") - request.escalates_at)
        late.append(recorded_at(request.pk, "request.expired") - request.expires_at)
        assert request.decided_at == request.expires_at
    assert min(late) >= timedelta(0), "never early"
    assert max(late) < timedelta(seconds=1.5), f"late by {max(late)}"  # the bench: p99 < 1 s


def _received(proc: live.Proc, task: str) -> int:
    return len(re.findall(rf"Task approvals\.tasks\.{task}\[[^\]]+\] received", proc.output()))


def _succeeded(proc: live.Proc, task: str) -> int:
    return len(re.findall(rf"Task approvals\.tasks\.{task}\[[^\]]+\] succeeded", proc.output()))


def test_a_worker_killed_with_its_timers_escalates_and_expires_each_once_after_restart(
    tmp_path, procs, new_request
):
    worker = live.start_worker(tmp_path, **TIMER_ENV)
    procs.append(worker)
    procs.append(live.start_beat(tmp_path, **TIMER_ENV))
    requests = [new_request(timeout_seconds=3) for _ in range(8)]
    # The worker holds every ETA message, unacknowledged, until its time ...
    live.wait_until(lambda: _received(worker, "expire_on_time") == 8, timeout=15)
    worker.stop(signal.SIGKILL)  # ... and dies with them.
    time.sleep(max(0.0, (requests[-1].expires_at - timezone.now()).total_seconds()) + 1)
    assert (
        ApprovalRequest.objects.filter(
            pk__in=[r.pk for r in requests], status=Status.PENDING
        ).count()
        == 8
    ), "nothing ran while the worker was down"

    restarted = live.start_worker(tmp_path, **TIMER_ENV)
    procs.append(restarted)
    live.wait_until(lambda: all_expired(requests), timeout=15)
    assert all(counts(r.pk) == (1, 1) for r in requests)

    # Redis gives the dead worker's messages out again once the visibility timeout is over;
    # make that happen now instead of at the transport's next restore sweep.
    with kombu.Connection(
        django_settings.CELERY_BROKER_URL, transport_options={"visibility_timeout": 0}
    ) as connection:
        channel: Any = connection.default_channel  # the Redis transport's channel
        channel.qos.restore_visible(num=1000, interval=1)
    live.wait_until(lambda: _received(restarted, "expire_on_time") >= 8, timeout=15)
    live.wait_until(  # they have run
        lambda: _succeeded(restarted, "expire_on_time") >= _received(restarted, "expire_on_time"),
        timeout=15,
    )
    assert all(counts(r.pk) == (1, 1) for r in requests), "a redelivered timer changed nothing"


def test_two_beats_at_once_double_nothing(tmp_path, procs, new_request, settings):
    settings.OVERSIGHT_TIMER_HORIZON_SECONDS = 0  # the beats hand every deadline over
    worker = live.start_worker(tmp_path, **TIMER_ENV)
    procs.append(worker)
    procs.append(live.start_beat(tmp_path, **TIMER_ENV))
    procs.append(live.start_beat(tmp_path, **TIMER_ENV))
    overdue = [new_request(timeout_seconds=60) for _ in range(6)]
    for request in overdue:  # for the sweeps
        shift_into_past(request.pk, 61)
    upcoming = [new_request(timeout_seconds=3 + n % 4) for n in range(12)]  # for the hand-over
    live.wait_until(lambda: all_expired(overdue + upcoming), timeout=30)
    time.sleep(1.5)  # a few more ticks of both beats
    assert all(counts(r.pk) == (1, 1) for r in overdue + upcoming)
    # Each deadline was handed to the broker once at most, though two beats ticked.
    assert _received(worker, "escalate_on_time") <= len(upcoming)
    assert _received(worker, "expire_on_time") <= len(upcoming)
    assert _received(worker, "expire_on_time") > 0, "the hand-over was exercised"


def test_emails_survive_a_worker_restart_and_escalation_emails_the_next_tier(
    tmp_path, procs, new_request, make_user
):
    sink = SmtpSink()
    mail_env = {
        **TIMER_ENV,
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(sink.port),
        "OVERSIGHT_BASE_URL": "https://oversight.example.com",
    }
    lead = make_user("mail-lead", roles=("approver",), tier="team_lead")
    manager = make_user("mail-em", roles=("approver",), tier="engineering_manager")
    for person in (lead, manager):
        person.email = f"{person.username}@example.com"
        person.save(update_fields=["email"])
    # No worker while the request commits (and a dead one): its email waits in the outbox.
    live.start_worker(tmp_path, **mail_env).stop(signal.SIGKILL)
    # Long enough for the worker's three pools and beat to start, on a loaded machine, before
    # it escalates (at 20 s) and expires (a request no longer pending is not emailed about).
    request = new_request(risk_level="medium", timeout_seconds=40)
    procs.append(live.start_worker(tmp_path, **mail_env))
    procs.append(live.start_beat(tmp_path, **mail_env))

    [created] = live.wait_until(lambda: sink.to("mail-lead@example.com"), timeout=20)
    assert "Approval needed" in created["Subject"]
    link = f"https://oversight.example.com/requests/{request.pk}/"
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in
             created.walk() if not part.is_multipart()}  # fmt: skip
    assert set(parts) == {"text/plain", "text/html"}
    assert link in parts["text/plain"]
    assert f'href="{link}"' in parts["text/html"]

    [escalated] = live.wait_until(lambda: sink.to("mail-em@example.com"), timeout=40)
    assert "Escalated" in escalated["Subject"]
    assert len(sink.to("mail-lead@example.com")) == 1, "the first tier is told once"


def test_a_redis_outage_keeps_the_api_and_votes_working_and_loses_no_timer(
    tmp_path, procs, make_agent, approvers
):
    redis_server = live.RedisServer(tmp_path)
    redis_server.start()
    env = {
        **TIMER_ENV,
        "REDIS_URL": redis_server.url,
        "OVERSIGHT_API_RATE_LIMIT_PER_MINUTE": "1000",
    }
    try:
        web = live.start_web(tmp_path, **env)
        procs.append(web.proc)
        worker = live.start_worker(tmp_path, **env)
        procs.append(worker)
        procs.append(live.start_beat(tmp_path, **env))
        agent = make_agent()
        api = httpx.Client(
            base_url=web.url, timeout=15, headers={"Authorization": f"Bearer {agent.key}"}
        )
        approver = live.logged_in(web.url, approvers["lead"].username, timeout=10)

        def create(timeout: int) -> str:
            response = api.post(
                "/api/v1/approval-requests",
                json={
                    "action": "read_file",
                    "params": {"timeout": timeout},
                    "risk_level": "low",
                    "justification": "outage drill",
                    "timeout_seconds": timeout,
                },
            )
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        def vote(request_id: str) -> None:
            response = approver.post(
                f"/requests/{request_id}/approve",
                data={"csrfmiddlewaretoken": approver.cookies["csrftoken"], "comment": "ok"},
            )
            assert response.status_code == 302, response.text

        # Deadlines that fall inside the outage: some already held by the worker, some for
        # the tick to hand over, some the tick can only sweep afterwards.
        timed = [create(t) for t in (3, 3, 5, 8, 15, 25, 25)]
        redis_server.stop()
        outage_ends = time.monotonic() + 30
        statuses: list[int] = []
        voted: list[str] = []
        slowest = 0.0
        while time.monotonic() < outage_ends:
            started = time.monotonic()
            request_id = create(20)
            slowest = max(slowest, time.monotonic() - started)
            timed.append(request_id)
            statuses.append(api.get(f"/api/v1/approval-requests/{request_id}").status_code)
            statuses.append(approver.get("/").status_code)
            if len(voted) < 3:
                to_vote = create(300)
                vote(to_vote)
                voted.append(to_vote)
            statuses.append(api.get("/api/v1/approval-requests?status=pending").status_code)
            time.sleep(1)
        assert len(statuses) > 30
        assert set(statuses) == {200}
        assert slowest < 2, f"a create took {slowest:.1f} s without Redis"
        assert api.get(f"{web.url}/readyz").status_code == 503  # it says so, and nothing else

        redis_server.start()  # empty: every message queued before the outage is gone
        assert ApprovalRequest.objects.filter(pk__in=voted, status=Status.APPROVED).count() == 3
        deadline = max(ApprovalRequest.objects.get(pk=pk).expires_at for pk in timed)
        time.sleep(max(0.0, (deadline - timezone.now()).total_seconds()))
        requests = list(ApprovalRequest.objects.filter(pk__in=timed))
        live.wait_until(lambda: all_expired(requests), timeout=20)
        assert all(counts(pk) == (1, 1) for pk in timed)
        assert worker.process.poll() is None, "the worker lived through the outage"
        assert api.get(f"{web.url}/readyz").status_code == 200
    finally:
        for proc in reversed(procs):
            proc.stop()
        procs.clear()
        redis_server.stop()
