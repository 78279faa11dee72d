"""Found by the MCP gateway's 20 concurrent calls (issue 25): an outcome report locked the
agent's row FOR UPDATE, which also blocks the foreign-key checks of rows that name the agent.
Django makes those checks deferred, so they run at COMMIT: after the audit append, with the
chain's lock held. A denied check (its violation names the agent) that reached COMMIT while an
outcome report held the agent and waited for the chain deadlocked with it. Locks on an agent
row are FOR NO KEY UPDATE now: they still exclude each other, not a row that names the agent."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.events import EventType
from controls import outcomes
from guardrails import services as guardrails
from tests.security.test_review_lock_order import _someone_waits
from tests.support import live


@pytest.mark.django_db(transaction=True)
def test_a_denied_check_and_an_outcome_report_of_one_agent_do_not_deadlock(make_agent, monkeypatch):
    agent = make_agent().agent
    real = guardrails.record_event
    appended, go = threading.Event(), threading.Event()

    def held(**kwargs):  # the violation's audit append: the chain's lock is held until COMMIT
        event = real(**kwargs)
        if kwargs["event_type"] == EventType.GUARDRAIL_VIOLATION:
            appended.set()
            go.wait(10)
        return event

    monkeypatch.setattr(guardrails, "record_event", held)
    errors: dict[str, BaseException] = {}

    def deny() -> None:
        try:
            guardrails.check_action(agent=agent, action="no_policy_covers_this", params={})
        except BaseException as exc:
            errors["check"] = exc
        finally:
            connection.close()

    def report() -> None:
        try:
            outcomes.report_outcome(
                agent=agent, action="read_file", params={"path": "/srv/a"}, success=True
            )
        except BaseException as exc:
            errors["outcome"] = exc
        finally:
            connection.close()

    checker = threading.Thread(target=deny)
    checker.start()
    assert appended.wait(10)
    reporter = threading.Thread(target=report)
    reporter.start()
    # Until the report holds the agent's row and waits for the chain's lock.
    live.wait_until(_someone_waits, timeout=10)
    go.set()
    checker.join(30)
    reporter.join(30)
    assert not errors, {name: repr(exc) for name, exc in errors.items()}
