"""SIEM streaming's rules as plain functions (SPEC §7): each event type's syslog severity and
priority, RFC 5424 structured-data escaping, and the retry backoff and claim lease of a failing
destination. No peers and no database; the delivery itself is in test_siem.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from audit import siem, tasks
from audit.events import EventType

# --- what a message looks like ---------------------------------------------------------------


def test_every_event_type_has_a_deliberate_severity():
    assert set(EventType.values) - set(siem.SEVERITY_BY_EVENT_TYPE) == set()


@pytest.mark.parametrize(
    ("event_type", "pri"),
    [
        # facility authpriv (10) * 8 + severity
        (EventType.EXECUTION_MISMATCH, 82),  # critical
        (EventType.LOGIN_LOCKED_OUT, 84),  # warning
        (EventType.GUARDRAIL_VIOLATION, 84),
        (EventType.API_KEY_REVOKED, 85),  # notice
        (EventType.POLICY_CHANGED, 85),
        (EventType.REQUEST_DECIDED, 86),  # informational
        (EventType.LOGIN_SUCCEEDED, 86),
        ("some.future_type", 85),  # not in the table yet: notice
    ],
)
def test_the_priority_is_authpriv_with_security_events_more_severe(event_type, pri):
    assert siem.priority(event_type) == pri


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("a]b", "a\\]b"),
        ('say "hi"', 'say \\"hi\\"'),
        ("back\\slash", "back\\\\slash"),
        ('\\"]', '\\\\\\"\\]'),  # the backslash first, so an escape is never escaped twice
        ("ünïcode [ok", "ünïcode [ok"),  # '[' needs no escape, UTF-8 stays
    ],
)
def test_structured_data_values_are_escaped_per_rfc_5424(value, escaped):
    assert siem.sd_escape(value) == escaped


# --- a failing destination: backoff and the claim's lease ------------------------------------


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(1, 60), (2, 60), (3, 60), (4, 80), (5, 160), (6, 300), (40, 300)]
)
def test_a_failing_destination_is_retried_after_the_lease_with_capped_backoff(attempts, seconds):
    assert siem.retry_after(attempts).total_seconds() == seconds


def test_a_claim_outlasts_any_run_so_no_second_worker_sends_meanwhile(settings):
    # A run's I/O ends at its deadline, and the task is killed at its hard time limit; its
    # claim is not taken over before either.
    limits = settings.CELERY_TASK_ANNOTATIONS[tasks.ship_siem.name]
    assert siem.retry_after(1) > timedelta(seconds=limits["time_limit"])
    assert limits["soft_time_limit"] >= siem.TASK_BUDGET_SECONDS
