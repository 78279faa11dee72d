"""The logging configuration: the every-few-seconds beat tasks do not log a line per run, other
tasks still do, and the periodic tasks log a line of their own when they do something.

The task-trace record ("succeeded") comes from Celery's own logging call; the worker's
"received" and beat's "Sending due task" are built here after Celery's logger names and formats,
so a change in those two would show only in `tests/test_make_run.py`, which reads a real
worker's and beat's output.
"""

from __future__ import annotations

import logging

import pytest
from celery.app import trace

from approvals import tasks
from tests.conftest import shift_into_past

TICK = "approvals.tasks.tick_timers"
CALLBACKS = "approvals.tasks.deliver_callbacks"


def celery_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("celery")]


def worker_received(task: str) -> None:
    context = {"id": "0f1e", "name": task, "args": "()", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(
        trace.LOG_RECEIVED, context, extra={"data": context}
    )


def worker_succeeded(task: str) -> None:
    trace.info(trace.LOG_SUCCESS, {"id": "0f1e", "name": task, "return_value": 0, "runtime": 0.01})


def beat_sent(entry: str, task: str) -> None:
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", entry, task)


def test_the_periodic_tasks_routine_lines_are_dropped_and_other_tasks_lines_kept(caplog):
    caplog.set_level(logging.INFO)
    for task in (TICK, CALLBACKS):
        worker_received(task)
        worker_succeeded(task)
    beat_sent("tick-timers", TICK)
    beat_sent("purge-idempotency-keys", "approvals.tasks.purge_idempotency_keys")
    assert celery_lines(caplog) == [
        f"Task {CALLBACKS}[0f1e] received",
        f"Task {CALLBACKS}[0f1e] succeeded in 0.01s: 0",
    ]


def test_warnings_about_a_periodic_task_still_pass(caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("celery.app.trace").error(
        trace.LOG_FAILURE,
        {"id": "0f1e", "name": TICK, "description": "raised unexpected", "exc": "OperationalError"},
    )
    logging.getLogger("celery.beat").warning("Scheduler: %s (%s) is late", "tick-timers", TICK)
    assert celery_lines(caplog) == [
        f"Task {TICK}[0f1e] raised unexpected: OperationalError",
        f"Scheduler: tick-timers ({TICK}) is late",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_tick_says_what_it_expired_and_is_silent_when_nothing_was_due(new_request, caplog):
    caplog.set_level(logging.INFO, logger="approvals.tasks")
    overdue = new_request(timeout_seconds=60)
    half = new_request(timeout_seconds=60)
    tasks.tick_timers()
    assert not [r for r in caplog.records if r.name == "approvals.tasks"]
    shift_into_past(overdue.pk, 61)
    shift_into_past(half.pk, 31)
    tasks.tick_timers()
    assert [r.getMessage() for r in caplog.records if r.name == "approvals.tasks"] == [
        "timer tick: 1 escalated, 1 expired"
    ]


@pytest.mark.django_db(transaction=True)
def test_the_email_sweep_counts_its_outcomes_and_is_silent_when_nothing_was_due(
    new_request, make_user, mailoutbox, caplog
):
    caplog.set_level(logging.INFO, logger="oversight.outbox")
    make_user("lead-a", roles=("approver",), tier="team_lead")
    new_request(risk_level="medium")
    assert tasks.sweep_emails() == 1
    assert tasks.sweep_emails() == 0
    assert [r.getMessage() for r in caplog.records if r.name == "oversight.outbox"] == [
        "outbox sweep, email deliveries: 1 delivered"
    ]
