"""An adversarial review of the monitoring (issue 23): each test reproduced one defect and failed
on the code as reviewed; each holds now."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection

from approvals import services as approvals
from approvals.models import ApprovalRequest, Vote
from guardrails.models import Violation
from monitoring import alerts, health, rollup
from monitoring.models import AgentDay, AlertState, Metric, MonitorAlert, RolledDay
from tests.conftest import client_for
from tests.monitoring.test_alerts import outcomes, spend

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 30)
NEXT = DAY + timedelta(days=1)
NOW = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def _from_records(end: date, days: int) -> health.Health:
    """The same figures with every rollup forgotten: aggregated from the records."""
    RolledDay.objects.all().delete()
    AgentDay.objects.all().delete()
    return health.health(end, days)


# --- rollup --------------------------------------------------------------------------------


def test_a_rollup_is_final_only_once_the_days_requests_escalated(make_agent, new_request):
    """The escalation rate is a cohort figure (requests *created* that day that escalated), but a
    request escalates at half its time limit, usually hours after it was created, often on the
    next UTC day. The rollup of its creation day, final 5 minutes after midnight, counts it as
    not escalated for ever; the page's figures then differ from the records' (the rollup's own
    promise: 'the page's figures are the same from the rollup as from the records'), and every
    rolled day under-reports escalations systematically."""
    agent = make_agent().agent
    request = new_request(agent=agent)
    ApprovalRequest.objects.filter(pk=request.pk).update(created_at=_at(DAY, 23, 30))

    # Rolled up 10 minutes after the day ended (with the 14 days before it, which the page reads
    # too): not final, as the day's requests still wait.
    rollup.roll(DAY - timedelta(days=health.BASELINE_DAYS), DAY, now=_at(NEXT, 0, 10))
    assert DAY not in health.final_days(DAY, DAY)
    # Half-time of its limit: the escalation lands on the next day.
    ApprovalRequest.objects.filter(pk=request.pk).update(escalated_at=_at(NEXT, 0, 30))
    assert health.health(NEXT, 2).overall[0].escalated == 1
    # Rolled up again once every request of the day has ended: final, and the same.
    rollup.roll(DAY - timedelta(days=health.BASELINE_DAYS), DAY, now=_at(NEXT, 0) + health.SETTLE)

    assert DAY in health.final_days(DAY, DAY)
    rolled = health.health(NEXT, 2).overall[0]
    live = _from_records(NEXT, 2).overall[0]
    assert (live.created, live.escalated) == (1, 1)
    assert (rolled.created, rolled.escalated) == (live.created, live.escalated)


def test_a_rollup_is_final_only_once_the_days_votes_cannot_be_voided(
    make_agent, new_request, approvers
):
    """Interventions count votes that stand (`voided_at` is null), grouped by the vote's day;
    a vote is voided later when the arguments are edited (approvals.services.votes). A vote of
    day D voided on D+1 stays counted in D's final rollup, while the records say it no longer
    stands: the page's human-intervention figures depend on whether beat rolled the day."""
    agent = make_agent().agent
    request = new_request(agent=agent)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    Vote.objects.filter(request=request).update(created_at=_at(DAY, 22))

    rollup.roll(DAY - timedelta(days=health.BASELINE_DAYS), DAY, now=_at(NEXT, 0, 10))
    Vote.objects.filter(request=request).update(voided_at=_at(NEXT, 1))
    assert DAY not in health.final_days(DAY, DAY)
    assert health.health(NEXT, 2).overall[0].approvals == 0
    rollup.roll(DAY - timedelta(days=health.BASELINE_DAYS), DAY, now=_at(NEXT, 0) + health.SETTLE)

    assert DAY in health.final_days(DAY, DAY)
    rolled = health.health(NEXT, 2).overall[0]
    live = _from_records(NEXT, 2).overall[0]
    assert live.approvals == 0
    assert rolled.approvals == live.approvals


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_rolls_of_the_same_day_take_turns(make_agent, monkeypatch):
    """`roll` deletes the day's rows and inserts new ones; two rolls of one day that overlap (a
    slow beat run and the next, or an operator's re-roll during beat) both delete nothing the
    other has committed, both insert, and the second fails on the unique (day, agent)
    constraint instead of waiting or skipping: the task errors out."""
    if connection.vendor != "postgresql":
        pytest.skip("needs concurrent writers")
    agent = make_agent().agent
    outcomes(agent, ok=3, failed=0, at=_at(DAY, 12))
    both_deleted = threading.Barrier(2)
    real = AgentDay.objects.bulk_create

    def insert_after_both_deleted(*args, **kwargs):
        # The rolls take turns: the other one waits for this one to commit, breaking the barrier.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_deleted.wait(3)
        return real(*args, **kwargs)

    monkeypatch.setattr(AgentDay.objects, "bulk_create", insert_after_both_deleted)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rollup.roll(DAY, DAY, now=_at(NEXT, 0, 10))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert AgentDay.objects.filter(day=DAY).count() == 1


# --- alerts --------------------------------------------------------------------------------


def test_an_overlapping_evaluation_leaves_an_alert_that_just_fired_firing(make_agent, monkeypatch):
    """`evaluate` computes its findings, then resolves every FIRING alert not among them. An
    evaluation whose findings were computed before the condition arose (two beat runs
    overlapping: a slow one at scale, and the next) resolves the alert the other one has just
    fired, though the condition holds. Then the unique (metric, subject, window) row blocks it
    from firing again: the success-rate alert stays 'resolved' for the rest of the day while
    the agent keeps failing."""
    agent = make_agent().agent
    real = alerts.findings

    def stale_then_other_beat_fires(now):
        found = real(now)  # this evaluation: nothing holds yet
        outcomes(agent, ok=8, failed=2, at=now)  # the failures arrive
        for finding in real(now):  # another beat run fires on them meanwhile
            alerts.fire(finding)
        return found

    monkeypatch.setattr(alerts, "findings", stale_then_other_beat_fires)
    alerts.evaluate(NOW)
    monkeypatch.setattr(alerts, "findings", real)

    alerts.evaluate(NOW + timedelta(minutes=1))  # the condition still holds

    (alert,) = MonitorAlert.objects.filter(metric=Metric.SUCCESS_RATE)
    assert alert.state == AlertState.FIRING


def test_an_agent_working_office_hours_raises_no_cost_spike(make_agent):
    """The 'normal hourly cost' is the 14 days' spend ÷ 336, idle hours included. An agent that
    works 8 hours a day at a perfectly steady 10 cents an hour has a 'normal' of 3.3 cents, so
    every ordinary working hour is '3x its normal' and fires a cost spike (live, email, audit),
    every day. Likewise any agent younger than 14 days. The seed's check is a spike against the
    agent's normal cost, not against its average over idle time."""
    agent = make_agent().agent
    today = NOW.date()
    for back in range(0, 15):
        day = today - timedelta(days=back)
        for hour in range(9, 17):
            moment = _at(day, hour, 10)
            if moment < NOW:
                spend(agent, "10", moment)

    found = [f for f in alerts.findings(NOW) if f.metric == Metric.COST_SPIKE]

    assert found == []


def test_four_violations_in_three_minutes_across_the_hour_are_repeated_violations(
    make_agent, settings
):
    """SPEC §6: repeated violations are 'at least 3 by one agent within an hour', and the
    guardrails app alerts on a sliding hour (`guardrails.services._repeated_violations`). The
    monitoring alert counts per clock hour: 2 violations at 11:58 and 2 at 12:01 (4 within
    three minutes) make no monitoring alert, so the list of alerts on the page misses a burst
    the managers were told about."""
    settings.OVERSIGHT_VIOLATION_ALERT_THRESHOLD = 3
    agent = make_agent().agent
    moments = [_at(NOW.date(), 11, 58), _at(NOW.date(), 11, 58), _at(NOW.date(), 12, 1)]
    moments.append(_at(NOW.date(), 12, 1))
    Violation.objects.bulk_create(
        Violation(
            agent=agent, action="x", code="forbidden_pattern", severity="high", message="m",
            params_sha256="0" * 64, purpose="check", created_at=moment,
        )
        for moment in moments
    )  # fmt: skip

    found = alerts.findings(_at(NOW.date(), 12, 2))

    assert [f.metric for f in found] == [Metric.REPEATED_VIOLATIONS]


# --- views ---------------------------------------------------------------------------------


def test_an_invalid_period_keeps_the_agent_filter(make_agent, make_user):
    """`_filters` keeps none of the filters when any one is invalid: `?agent=X&days=365` (a
    bookmarked or hand-edited link) shows every agent's figures under the form, which still
    shows X selected, with no hint that the agent filter was ignored."""
    agent = make_agent("alpha").agent
    make_agent("beta")
    manager = make_user(roles=("manager",))

    response = client_for(manager).get(f"/monitoring/?agent={agent.name}&days=365")

    assert response.status_code == 200
    assert b"Agent health, all agents" not in response.content  # what it shows
    assert b"Agent health, alpha" in response.content


def test_a_compliance_officer_who_is_an_approver_does_not_read_peers_records(
    make_agent, make_user, new_request, approvers
):
    """SPEC §12: each approver's decisions and approval rate are 'shown privately to managers,
    never to peers', and `overseers_section` is managers only. But the fairness section, open
    to compliance, lists every approver by name with their approve and reject counts (the
    selection-bias table), whatever the amount of data: a person holding compliance and
    approver reads their peers' approval records there."""
    request = new_request(agent=make_agent().agent)
    approvals.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    peer = make_user("peer", roles=("compliance", "approver"), tier="team_lead")

    response = client_for(peer).get("/monitoring/fairness")

    assert response.status_code == 200
    assert b"t-lead: 1 approve, 0 reject" not in response.content


def test_times_labelled_utc_are_shown_in_utc(make_agent, make_user, settings):
    """The page says 'Window (UTC)' and 'Figures as of … UTC', but the `date` filter renders in
    the current time zone, TIME_ZONE = OVERSIGHT_TIME_ZONE (configurable). With
    OVERSIGHT_TIME_ZONE=Europe/Paris a success-rate alert for the UTC day 7 Dec is listed with the
    window '2026-12-07 01:00 → 2026-12-08 01:00' under a UTC heading: the window looks wrong by an
    hour (and by a day's boundary), as does every fired/resolved time."""
    settings.TIME_ZONE = "Europe/Paris"
    agent = make_agent().agent
    MonitorAlert.objects.create(
        metric=Metric.SUCCESS_RATE, agent=agent, subject=agent.name,
        window_start=datetime(2026, 12, 7, tzinfo=UTC),
        window_end=datetime(2026, 12, 8, tzinfo=UTC), value=0.5, threshold=0.85, message="m",
    )  # fmt: skip
    manager = make_user(roles=("manager",))

    response = client_for(manager).get("/monitoring/")

    assert b"Window (UTC)" in response.content
    assert b"2026-12-07 01:00" not in response.content  # what it shows: Paris time
    assert b"2026-12-07 00:00" in response.content
