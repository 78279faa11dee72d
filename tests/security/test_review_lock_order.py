"""Issue 18, item 1 (found by review): the kill switch takes its locks in everyone's order
(requests, budget windows, then the audit chain), so a create under a shared budget cannot
deadlock with it."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from agents import services as agents
from approvals import services
from approvals.services import create, lifecycle, votes
from audit.services import record_event
from budgets import services as budgets


@pytest.mark.django_db(transaction=True)
def test_kill_switch_and_a_create_under_a_shared_budget_do_not_deadlock(make_agent, monkeypatch):
    budgets.set_budget(scope="global", period="daily", limit_cents=1_000_000)
    stopped = make_agent(team="t").agent
    other = make_agent(team="t").agent
    services.create_request(
        agent=stopped,
        action="write_file",
        params={"path": "/srv/a"},
        risk_level="medium",
        justification="x",
        estimated_cost_cents=100,
    )
    real = services.agent_status_changed
    appended, go = threading.Event(), threading.Event()

    def late(**kwargs):  # after set_agent_status's own record_event: the chain's lock is held
        appended.set()
        go.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(agents.approvals, "agent_status_changed", late)
    errors: dict[str, BaseException] = {}

    def kill() -> None:
        try:
            agents.set_agent_status(agent=stopped, status="disabled", reason="incident")
        except BaseException as exc:
            errors["kill"] = exc
        finally:
            connection.close()

    def create() -> None:
        try:
            services.create_request(
                agent=other,
                action="write_file",
                params={"path": "/srv/b"},
                risk_level="medium",
                justification="y",
                estimated_cost_cents=100,
            )
        except BaseException as exc:
            errors["create"] = exc
        finally:
            connection.close()

    killer = threading.Thread(target=kill)
    killer.start()
    assert appended.wait(10)
    creator = threading.Thread(target=create)
    creator.start()
    # Until the create has reserved (its window row locked) and waits for a lock the kill
    # switch holds: a backend of this database waiting on a lock.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _someone_waits():
        time.sleep(0.05)
    go.set()
    killer.join(30)
    creator.join(30)
    assert not errors, {k: repr(v) for k, v in errors.items()}


def _someone_waits() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        waiting = cursor.fetchone()[0] > 0
    connection.close()
    return waiting


def _create_under(agent) -> None:
    services.create_request(
        agent=agent,
        action="write_file",
        params={"path": "/srv/b"},
        risk_level="medium",
        justification="y",
        estimated_cost_cents=100,
    )


def _race_a_create_against(decide, pause_after: str, make_agent, monkeypatch) -> dict:
    """Run `decide(request)` for a request holding a budget reservation, pause it right after it
    appends the `pause_after` audit event (the chain's lock held), let a create under the same
    budget reserve and queue behind it, then let both finish. Returns the errors."""
    budgets.set_budget(scope="global", period="daily", limit_cents=1_000_000)
    agent = make_agent(team="t").agent
    other = make_agent(team="t").agent
    request = services.create_request(
        agent=agent,
        action="write_file",
        params={"path": "/srv/a"},
        risk_level="medium",
        justification="x",
        estimated_cost_cents=100,
    )
    real = record_event
    appended, go = threading.Event(), threading.Event()

    def pausing(**kwargs):
        event = real(**kwargs)
        if kwargs["event_type"] == pause_after and not appended.is_set():
            appended.set()
            go.wait(10)
        return event

    for module in (create, votes, lifecycle):  # the services that append
        monkeypatch.setattr(module, "record_event", pausing)
    errors: dict[str, BaseException] = {}

    def run(name, work) -> None:
        try:
            work()
        except BaseException as exc:
            errors[name] = exc
        finally:
            connection.close()

    decider = threading.Thread(target=run, args=("decide", lambda: decide(request)))
    decider.start()
    assert appended.wait(10)
    creator = threading.Thread(target=run, args=("create", lambda: _create_under(other)))
    creator.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _someone_waits():
        time.sleep(0.05)
    go.set()
    decider.join(30)
    creator.join(30)
    return errors


@pytest.mark.django_db(transaction=True)
def test_a_rejection_and_a_create_under_a_shared_budget_do_not_deadlock(
    make_agent, approvers, monkeypatch
):
    """Found by `make soak`: a rejection appended its vote event before giving back the
    request's reservation, so a create holding the budget window waited for the chain while
    the rejection waited for the window: PostgreSQL broke the deadlock with a 500."""
    from audit.events import EventType

    def reject(request) -> None:
        services.reject_request(request_id=request.pk, reviewer=approvers["lead"], reason="no")

    errors = _race_a_create_against(reject, EventType.REQUEST_VOTED, make_agent, monkeypatch)
    assert not errors, {k: repr(v) for k, v in errors.items()}


@pytest.mark.django_db(transaction=True)
def test_an_expiry_catching_up_its_escalation_and_a_create_do_not_deadlock(make_agent, monkeypatch):
    """Same, for an expiry that records a missed escalation first."""
    from audit.events import EventType
    from tests.conftest import shift_into_past

    def expire(request) -> None:
        shift_into_past(request.pk, 10 * 24 * 3600)
        assert services.expire_request(request_id=request.pk)

    errors = _race_a_create_against(expire, EventType.REQUEST_ESCALATED, make_agent, monkeypatch)
    assert not errors, {k: repr(v) for k, v in errors.items()}
