"""Where each Celery task runs and how long it may take, and beat's schedule (SPEC §9.6).

Settings (`oversight.settings`) hand these to Celery; the intervals come from the environment.
"""

from __future__ import annotations

ROUTES: dict[str, dict[str, str]] = {
    "approvals.tasks.escalate_on_time": {"queue": "timers"},
    "approvals.tasks.expire_on_time": {"queue": "timers"},
    "approvals.tasks.tick_timers": {"queue": "timers"},
    "approvals.tasks.deliver_callbacks": {"queue": "outbound"},
    "approvals.tasks.retry_delivery": {"queue": "outbound"},
    "approvals.tasks.sweep_callbacks": {"queue": "outbound"},
    "approvals.tasks.sweep_emails": {"queue": "email"},
    "budgets.tasks.sweep_alert_emails": {"queue": "email"},
    "guardrails.tasks.sweep_alert_emails": {"queue": "email"},
    "controls.tasks.sweep_alert_emails": {"queue": "email"},
    "audit.tasks.ship_siem": {"queue": "outbound"},
    "audit.tasks.sweep_summary_emails": {"queue": "email"},
    "monitoring.tasks.sweep_alert_emails": {"queue": "email"},
    "monitoring.tasks.sweep_fairness_reports": {"queue": "email"},
    "slack.tasks.deliver": {"queue": "outbound"},
    "slack.tasks.sweep": {"queue": "outbound"},
}
# Every task has a soft time limit (SoftTimeLimitExceeded is raised in it) and a hard one (its
# process is killed and replaced; with acks_late the message is redelivered, and every task is
# safe to run again). Timer tasks take milliseconds; a sweep stops taking rows well before its
# limit; an outbound attempt has a total deadline of its own (oversight.outbound). The default
# limits are in the settings (60 s, 90 s); these tasks have their own.
# Tasks that send end within the outbox's 60 s lease on a row, so no second worker takes a row
# that is still being sent (an attempt lasts at most OVERSIGHT_OUTBOUND_TIMEOUT_SECONDS, ≤ 30 s;
# a sweep starts attempts for 3 s).
_SENDING = {"soft_time_limit": 45, "time_limit": 55}
ANNOTATIONS: dict[str, dict[str, int]] = {
    "approvals.tasks.escalate_on_time": {"soft_time_limit": 20, "time_limit": 30},
    "approvals.tasks.expire_on_time": {"soft_time_limit": 20, "time_limit": 30},
    "approvals.tasks.tick_timers": {"soft_time_limit": 30, "time_limit": 45},
    **{task: _SENDING for task, route in ROUTES.items() if route["queue"] in ("outbound", "email")},
}


def beat_schedule(
    *,
    tick: float,
    checkpoint_check: float,
    autonomy_refresh: float,
    monitoring_evaluate: float,
    siem: bool,
    slack: bool = False,
) -> dict[str, dict[str, object]]:
    """Beat's schedule; `tick` is OVERSIGHT_TIMER_TICK_SECONDS, the others are their settings."""
    schedule: dict[str, dict[str, object]] = {
        "tick-timers": {
            "task": "approvals.tasks.tick_timers",
            "schedule": tick,
            # A tick that waited out an outage is stale: the next one does its work.
            "options": {"expires": tick * 2},
        },
        # A sweep that waited longer than its interval is stale (the outbound pool was busy): the
        # next one does its work, so sweeps do not pile up behind slow receivers.
        "sweep-callbacks": {
            "task": "approvals.tasks.sweep_callbacks",
            "schedule": 15.0,
            "options": {"expires": 15.0},
        },
        "sweep-emails": {
            "task": "approvals.tasks.sweep_emails",
            "schedule": tick,
            "options": {"expires": tick * 2},
        },
        "sweep-alert-emails": {
            "task": "budgets.tasks.sweep_alert_emails",
            "schedule": tick,
            "options": {"expires": tick * 2},
        },
        # Checks are logged to a Redis stream on their hot path; this moves them to the database.
        "drain-check-log": {
            "task": "guardrails.tasks.drain_check_log",
            "schedule": tick,
            "options": {"expires": tick * 2},
        },
        "sweep-violation-alert-emails": {
            "task": "guardrails.tasks.sweep_alert_emails",
            "schedule": tick,
            "options": {"expires": tick * 2},
        },
        # Caches' versions again, in case a publication was lost (oversight.cache).
        "republish-cache-versions": {
            "task": "guardrails.tasks.republish_cache_versions",
            "schedule": tick,
            "options": {"expires": tick * 2},
        },
        "purge-idempotency-keys": {
            "task": "approvals.tasks.purge_idempotency_keys",
            "schedule": 3600.0,
        },
        "purge-check-records": {"task": "guardrails.tasks.purge_check_records", "schedule": 3600.0},
        "sweep-agent-alert-emails": {
            "task": "controls.tasks.sweep_alert_emails",
            "schedule": tick,
            "options": {"expires": tick * 2},
        },
        # The transparency log: extend the Merkle tree, sign a checkpoint when due (SPEC §7).
        "make-checkpoint": {
            "task": "audit.tasks.make_checkpoint",
            "schedule": checkpoint_check,
            "options": {"expires": checkpoint_check * 2},
        },
        # The weekly compliance summary (SPEC §7): written once per week (Monday 00:00 UTC) by
        # whichever run comes first after the week ends, sent by the outbox sweep.
        "write-weekly-summary": {
            "task": "audit.tasks.write_weekly_summary",
            "schedule": 600.0,
            "options": {"expires": 600.0},
        },
        "sweep-summary-emails": {
            "task": "audit.tasks.sweep_summary_emails",
            "schedule": 60.0,
            "options": {"expires": 60.0},
        },
        # Autonomy recommendations from the agents' records; lowerings apply at once (SPEC §6).
        "refresh-autonomy": {
            "task": "controls.tasks.refresh_autonomy",
            "schedule": autonomy_refresh,
            "options": {"expires": autonomy_refresh},
        },
        # The monitoring alerts on the seed's thresholds (SPEC §12), and the weekly fairness
        # report to the managers (written once per week, sent by the outbox sweep).
        "evaluate-monitoring-alerts": {
            "task": "monitoring.tasks.evaluate_alerts",
            "schedule": monitoring_evaluate,
            "options": {"expires": monitoring_evaluate},
        },
        "roll-monitoring-days": {
            "task": "monitoring.tasks.roll_days",
            "schedule": 300.0,
            "options": {"expires": 300.0},
        },
        # Not every tick: these are warnings, and each task per tick costs the worker a turn.
        "sweep-monitoring-alert-emails": {
            "task": "monitoring.tasks.sweep_alert_emails",
            "schedule": 10.0,
            "options": {"expires": 10.0},
        },
        "write-fairness-report": {
            "task": "monitoring.tasks.write_fairness_report",
            "schedule": 600.0,
            "options": {"expires": 600.0},
        },
        "sweep-fairness-reports": {
            "task": "monitoring.tasks.sweep_fairness_reports",
            "schedule": 60.0,
            "options": {"expires": 60.0},
        },
        # Delegations whose time is up are recorded as ended (they stopped applying on time
        # already: `accounts.selectors.delegations_in_force`).
        "end-lapsed-delegations": {
            "task": "accounts.tasks.end_lapsed_delegations",
            "schedule": 60.0,
            "options": {"expires": 60.0},
        },
    }
    # SIEM streaming of the audit events (SPEC §7, audit.siem), every tick, only when a destination
    # is configured: a task per tick that has nothing to do still costs the worker its round trip.
    if siem:
        schedule["ship-siem"] = {
            "task": "audit.tasks.ship_siem",
            "schedule": tick,
            "options": {"expires": tick * 2},
        }
    # Slack's outbox (slack.delivery): new requests posted, messages updated in place, replies
    # to people; every tick, only when a bot token is configured.
    if slack:
        schedule["sweep-slack"] = {
            "task": "slack.tasks.sweep",
            "schedule": tick,
            "options": {"expires": tick * 2},
        }
    return schedule
