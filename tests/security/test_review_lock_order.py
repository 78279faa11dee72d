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
