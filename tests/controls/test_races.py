"""Lock order under concurrency (an adversarial review's findings): the agent-control paths take
their row locks (the agent's pending requests for a pause or kill switch, a cascade alert's
unique row) before their first audit append, which holds the chain's lock to COMMIT, as every
other path does. Taken after it, a vote or a cancel, or another agent's failure, deadlocked
with them: the receipt or the breaker's opening was rolled back with a 500.

Each test widens the window with a sleep in the other transaction; the paths are unchanged."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection

from agents.models import Agent, AgentStatus
from approvals import services as approvals
from approvals.services import lifecycle
from controls import alerts, outcomes
from controls.models import AgentAlert, AlertKind, Outcome

pytestmark = pytest.mark.django_db(transaction=True)

PARAMS = {"service": "api", "version": "1.2.3"}


def together(**calls: Callable[[], object]) -> dict[str, BaseException]:
    """Run each call in a thread named after it; the errors they raised, by name."""
    errors: dict[str, BaseException] = {}

    def run(name: str, call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:
            errors[name] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item, name=item[0]) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_a_mismatch_while_the_agent_cancels_another_request(
    make_agent, new_request, approvers, monkeypatch
):
    agent = make_agent().agent
    approved = new_request(agent=agent, params=PARAMS)
    approvals.approve_request(request_id=approved.pk, reviewer=approvers["lead"])
    other = new_request(agent=agent, params={"service": "web", "version": "9"})
    original = lifecycle._record_close
    cancelling = threading.Event()

    def slow_close(request, **kwargs):
        if threading.current_thread().name == "cancel":
            cancelling.set()
            time.sleep(1.0)  # holds the request's lock, before its own append
        return original(request, **kwargs)

    monkeypatch.setattr(lifecycle, "_record_close", slow_close)

    def receipt() -> None:
        cancelling.wait(5)
        outcomes.report_outcome(
            agent=agent,
            action=approved.action,
            params={**PARAMS, "version": "6.6.6"},  # not what was approved
            approval_request_id=approved.pk,
            success=True,
        )

    errors = together(
        cancel=lambda: approvals.cancel_request(request_id=other.pk, agent=agent),
        receipt=receipt,
    )

    assert errors == {}, {name: repr(exc) for name, exc in errors.items()}
    agent.refresh_from_db()
    assert agent.status == AgentStatus.DISABLED
    assert Outcome.objects.filter(approval_request=approved).exists()


def test_a_breaker_opening_while_another_agent_raises_the_teams_cascade(make_agent, monkeypatch):
    a, b, c, d = (make_agent(team="payments").agent for _ in range(4))
    for other in (c, d):  # two of the team failed a minute ago
        Outcome.objects.create(
            agent=other, action="read_file", params_sha256="0" * 64, success=False
        )
    Agent.objects.filter(pk=a.pk).update(consecutive_failures=2)  # its next failure opens it
    original = alerts.record_event
    inserted = threading.Event()

    def slow_append(**kwargs):
        if threading.current_thread().name == "b":
            inserted.set()  # b's cascade row is in, not committed
            time.sleep(1.0)
        return original(**kwargs)

    monkeypatch.setattr(alerts, "record_event", slow_append)

    def fail_a() -> None:
        inserted.wait(5)
        outcomes.report_outcome(agent=a, action="read_file", params={"n": 4}, success=False)

    errors = together(
        b=lambda: outcomes.report_outcome(
            agent=b, action="read_file", params={"n": 3}, success=False
        ),
        a=fail_a,
    )

    assert errors == {}, {name: repr(exc) for name, exc in errors.items()}
    a.refresh_from_db()
    assert a.breaker_opened_at is not None
    assert AgentAlert.objects.filter(kind=AlertKind.CASCADE).count() == 1
