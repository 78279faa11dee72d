"""`policies import --dry-run` (SPEC §6): changes nothing, and replays the last 7 days of logged
checks against the file to report which decisions would change. The log itself: checks append
to a Redis stream that `guardrails.checklog.drain` moves into `CheckRecord` rows."""

from __future__ import annotations

import io
import itertools
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone

from agents.models import Agent
from approvals import services as approvals
from audit.models import AuditEvent
from guardrails import checklog, policyfile, services
from guardrails import policies as policy_changes
from guardrails.counters import CHECK_LOG
from guardrails.models import CheckRecord, Policy, PolicyVersion
from oversight.redis_clients import quick_client

pytestmark = pytest.mark.django_db

_stream_ids = itertools.count(1)


def policies(*args: str) -> str:
    out = io.StringIO()
    call_command("policies", *args, stdout=out)
    return out.getvalue()


def export() -> dict[str, Any]:
    body = yaml.safe_load(policies("export"))
    assert isinstance(body, dict)
    return body


def dump(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False)


def dry_run(tmp_path: Path, body: dict[str, Any]) -> list[str]:
    path = tmp_path / "policies.yaml"
    path.write_text(dump(body), encoding="utf-8")
    return policies("import", str(path), "--dry-run").splitlines()


def entry(body: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in body["policies"] if p["name"] == name and p["scope"] == "global"]
    return found


def logged(
    agent: Agent,
    action: str,
    params: dict[str, Any] | None,
    at: datetime,
    *,
    decision: str = "allow",
    codes: tuple[str, ...] = (),
) -> CheckRecord:
    """A check as the log keeps it (what `checklog.drain` writes)."""
    return CheckRecord.objects.create(
        stream_id=f"{int(at.timestamp() * 1000)}-{next(_stream_ids)}",
        checked_at=at,
        agent=agent,
        action=action,
        params=params,
        purpose="check",
        decision=decision,
        codes=list(codes),
    )


def ten_past_the_hour(days_ago: float) -> datetime:
    """Ten minutes past a clock hour, `days_ago` days ago: the next minutes are in the same hour."""
    return (timezone.now() - timedelta(days=days_ago)).replace(minute=10, second=0, microsecond=0)


def state() -> tuple[str, int, int]:
    return policies("export"), PolicyVersion.objects.count(), AuditEvent.objects.count()


# --- a dry run changes nothing -------------------------------------------------------------


def test_a_dry_run_shows_the_diff_and_changes_nothing(tmp_path):
    before = state()
    body = export()
    body["policies"] = [p for p in body["policies"] if p["name"] != "delete_resource"]
    entry(body, "read_file")["enabled"] = False
    body["policies"].append(
        {"name": "list_files", "category": "read", "risk_level": "low", "sensitive": True}
    )

    lines = dry_run(tmp_path, body)

    assert lines[:5] == [
        "~ read_file:",
        "    enabled: true -> false",
        "+ list_files: new policy",
        "- delete_resource: removed",
        "",
    ]
    assert lines[-1] == "Dry run: nothing was changed."
    assert state() == before
    assert not Policy.objects.filter(name="list_files").exists()


def test_a_dry_run_through_the_service_reports_without_applying():
    body = export()
    entry(body, "run_command")["rate_limit_per_hour"] = 2
    versions = PolicyVersion.objects.count()

    report = policy_changes.import_policies(text=dump(body), dry_run=True)

    assert not report.applied
    assert [(c.kind, c.label, c.fields) for c in report.changes] == [
        ("changed", "run_command", ["rate_limit_per_hour"])
    ]
    assert report.replay is not None
    assert PolicyVersion.objects.count() == versions
    assert Policy.objects.get(name="run_command").rate_limit_per_hour == 50


# --- the replay ----------------------------------------------------------------------------


def test_a_new_forbidden_pattern_turns_the_allowed_checks_it_matches_into_denies(
    tmp_path, make_agent
):
    reader = make_agent("reader-bot").agent
    at = ten_past_the_hour(2)
    logged(reader, "read_file", {"path": "/srv/tls/server.key"}, at)
    logged(reader, "read_file", {"path": "/srv/tls/backup.KEY"}, at + timedelta(hours=5))
    logged(reader, "read_file", {"path": "/srv/readme.md"}, at)
    logged(reader, "read_file", None, at)  # its arguments were too large to keep
    # Older than the 7 days the replay looks back: it would change, but is not counted.
    logged(reader, "read_file", {"path": "/srv/old.key"}, ten_past_the_hour(8))
    logged(reader, "read_file", None, ten_past_the_hour(8))
    body = export()
    entry(body, "read_file")["forbidden_patterns"].append(r"\.key$")

    lines = dry_run(tmp_path, body)

    assert lines[-3:] == [
        "Replayed 3 checks of the last 7 days (1 could not be: their arguments were too large "
        "to keep): 2 decisions would change.",
        "       2 x reader-bot read_file: allow -> deny (forbidden_pattern)",
        "Dry run: nothing was changed.",
    ]
    assert r"\.key$" not in Policy.objects.get(name="read_file").forbidden_patterns


def test_lowering_a_rate_limit_denies_the_checks_past_it_in_each_hour(make_agent):
    busy = make_agent("busy-bot").agent
    calm = make_agent("calm-bot").agent
    at = ten_past_the_hour(1)
    for minute in range(5):  # five in one clock hour: the 3rd, 4th and 5th are past 2
        logged(busy, "run_command", {"command": "ls -la"}, at + timedelta(minutes=minute))
    for minute in range(2):  # two in the next hour: within the limit again
        logged(busy, "run_command", {"command": "ls"}, at + timedelta(hours=1, minutes=minute))
    for minute in range(2):  # another agent's count is its own
        logged(calm, "run_command", {"command": "pwd"}, at + timedelta(minutes=minute))
    body = export()
    entry(body, "run_command")["rate_limit_per_hour"] = 2

    report = policy_changes.import_policies(text=dump(body), dry_run=True)

    assert report.replay is not None
    assert report.replay.replayed == 9
    assert report.replay.skipped == 0
    assert report.replay.changed == Counter(
        {
            (
                "busy-bot",
                "run_command",
                "require_approval",
                "deny",
                "rate_limited, policy_requires_approval",
            ): 3
        }
    )
    assert Policy.objects.get(name="run_command").rate_limit_per_hour == 50


def test_raising_a_rate_limit_lets_through_what_todays_limit_refuses(make_agent):
    busy = make_agent("busy-bot").agent
    at = ten_past_the_hour(3)
    for minute in range(14):  # deploy_to_production allows 10 an hour
        logged(busy, "deploy_to_production", {"service": "api"}, at + timedelta(minutes=minute))
    body = export()
    entry(body, "deploy_to_production")["rate_limit_per_hour"] = 12

    report = policy_changes.import_policies(text=dump(body), dry_run=True)

    assert report.replay is not None
    assert report.replay.changed == Counter(
        {
            (
                "busy-bot",
                "deploy_to_production",
                "deny",
                "require_approval",
                "policy_requires_approval, critical_risk",
            ): 2
        }
    )


def test_an_unchanged_file_reports_no_changed_decisions(tmp_path, make_agent):
    agent = make_agent().agent
    at = ten_past_the_hour(1)
    logged(agent, "read_file", {"path": "/app/.env"}, at, decision="deny")
    logged(agent, "read_file", {"path": "/srv/a.txt"}, at)
    for minute in range(12):
        logged(agent, "deploy_to_production", {"v": minute}, at + timedelta(minutes=minute))
    logged(agent, "no_such_action", {}, at)

    lines = dry_run(tmp_path, export())

    assert lines == [
        "No changes: the policies are what the file says.",
        "",
        "Replayed 15 checks of the last 7 days: 0 decisions would change.",
        "Dry run: nothing was changed.",
    ]


def test_disabling_a_policy_makes_its_action_unknown_in_the_replay(make_agent):
    agent = make_agent("reader-bot").agent
    logged(agent, "read_file", {"path": "/srv/a.txt"}, ten_past_the_hour(1))
    body = export()
    entry(body, "read_file")["enabled"] = False

    report = policy_changes.import_policies(text=dump(body), dry_run=True)

    assert report.replay is not None
    assert report.replay.changed == Counter(
        {("reader-bot", "read_file", "allow", "deny", "unknown_action"): 1}
    )


def test_an_agents_own_policy_in_the_file_changes_only_that_agents_decisions(make_agent):
    strict = make_agent("strict-bot").agent
    other = make_agent("other-bot").agent
    at = ten_past_the_hour(1)
    logged(strict, "read_file", {"path": "/srv/notes.md"}, at)
    logged(other, "read_file", {"path": "/srv/notes.md"}, at)
    body = export()
    own = dict(entry(body, "read_file"), scope="agent", agent="strict-bot")
    own["forbidden_patterns"] = [r"\.md$"]
    body["policies"].append(own)

    report = policy_changes.import_policies(text=dump(body), dry_run=True)

    assert [line for c in report.changes for line in c.lines()] == [
        "+ read_file (agent strict-bot): new policy"
    ]
    assert report.replay is not None
    assert report.replay.changed == Counter(
        {("strict-bot", "read_file", "allow", "deny", "forbidden_pattern"): 1}
    )
    assert not Policy.objects.filter(scope="agent").exists()


def check_then_ask(agent: Agent, times: int) -> list[str]:
    """What an agent usually does: check an action, then ask for the approval it needs (the
    create uses the slot its check held: one call counts once)."""
    decisions = []
    for index in range(times):
        params = {"command": f"make report-{index}"}
        check = services.check_action(agent=agent, action="run_command", params=params)
        decisions.append(check.decision)
        try:
            approvals.create_request(
                agent=agent,
                action="run_command",
                params=params,
                risk_level="high",
                justification="The weekly report.",
            )
            decisions.append("created")
        except approvals.GuardrailDenied:
            decisions.append("refused")
    return decisions


def test_the_replay_counts_a_check_and_the_create_that_follows_it_once(make_agent):
    first = make_agent().agent
    assert check_then_ask(first, 3) == ["require_approval", "created"] * 3
    assert checklog.drain() == 6
    body = export()
    entry(body, "run_command")["rate_limit_per_hour"] = 3

    report = policy_changes.import_policies(text=dump(body), dry_run=True)

    assert report.replay is not None
    assert report.replay.replayed == 6
    # Under that limit, the same three check-then-ask calls all pass, as the real check shows:
    policy_changes.import_policies(text=dump(body))
    assert check_then_ask(make_agent().agent, 3) == ["require_approval", "created"] * 3
    assert sum(report.replay.changed.values()) == 0, report.replay.lines()


def test_the_replay_reads_todays_policies_not_the_logged_decisions(make_agent):
    # Logged as a deny under an older policy, allowed by today's and the file's: no change.
    agent = make_agent().agent
    logged(agent, "read_file", {"path": "/srv/a.txt"}, ten_past_the_hour(1), decision="deny")

    report = policy_changes.import_policies(text=policies("export"), dry_run=True)

    assert report.replay is not None
    assert (report.replay.replayed, sum(report.replay.changed.values())) == (1, 0)


# --- the check log -------------------------------------------------------------------------


def stream_length() -> int:
    return int(quick_client().xlen(CHECK_LOG))


def test_checks_are_drained_from_redis_into_check_records(make_agent):
    agent = make_agent("logged-bot").agent
    services.check_action(agent=agent, action="read_file", params={"path": "/srv/a.txt"})
    services.check_action(agent=agent, action="read_file", params={"path": "/app/.env"})
    services.check_action(
        agent=agent,
        action="run_command",
        params={"command": "ls", "args": ["-l", {"depth": 2}]},
        estimated_cost_cents=3,
        confidence=0.9,
    )
    assert stream_length() == 3
    assert not CheckRecord.objects.exists()

    assert checklog.drain() == 3

    records = list(CheckRecord.objects.order_by("checked_at", "id"))
    assert [(r.agent_id, r.action, r.params, r.decision, r.codes) for r in records] == [
        (agent.pk, "read_file", {"path": "/srv/a.txt"}, "allow", []),
        (agent.pk, "read_file", {"path": "/app/.env"}, "deny", ["forbidden_pattern"]),
        (
            agent.pk,
            "run_command",
            {"command": "ls", "args": ["-l", {"depth": 2}]},
            "require_approval",
            ["policy_requires_approval"],
        ),
    ]
    assert (records[2].estimated_cost_cents, records[2].confidence) == (3, 0.9)
    assert {r.purpose for r in records} == {"check"}
    assert all(timezone.now() - r.checked_at < timedelta(minutes=5) for r in records)
    assert stream_length() == 0

    assert checklog.drain() == 0
    assert CheckRecord.objects.count() == 3


def test_a_check_past_the_rate_limit_is_logged_as_a_deny(make_agent):
    read_file = Policy.objects.get(name="read_file")
    policy_changes.save_policy(
        fields={**policyfile.snapshot(read_file), "rate_limit_per_hour": 1}, policy=read_file
    )
    agent = make_agent().agent
    for _ in range(2):
        services.check_action(agent=agent, action="read_file", params={"path": "/srv/a.txt"})

    checklog.drain()

    records = CheckRecord.objects.order_by("checked_at", "id")
    assert [(r.decision, r.codes) for r in records] == [("allow", []), ("deny", ["rate_limited"])]


def test_arguments_too_large_to_keep_are_logged_without_them_and_skipped_by_the_replay(
    make_agent,
):
    agent = make_agent().agent
    big = {"path": "/srv/a.txt", "blob": "x" * (services.MAX_LOGGED_PARAMS + 1)}
    services.check_action(agent=agent, action="read_file", params=big)
    services.check_action(agent=agent, action="read_file", params={"path": "/srv/b.txt"})

    assert checklog.drain() == 2

    records = CheckRecord.objects.order_by("checked_at", "id")
    assert [r.params for r in records] == [None, {"path": "/srv/b.txt"}]
    report = policy_changes.import_policies(text=policies("export"), dry_run=True)
    assert report.replay is not None
    assert (report.replay.replayed, report.replay.skipped) == (1, 1)


def test_a_drain_moves_more_than_one_batch(make_agent, monkeypatch):
    monkeypatch.setattr(checklog, "BATCH", 2)
    agent = make_agent().agent
    for index in range(5):
        services.check_action(agent=agent, action="read_file", params={"path": f"/srv/{index}"})

    assert checklog.drain() == 5

    records = CheckRecord.objects.order_by("checked_at", "id")
    assert [r.params for r in records] == [{"path": f"/srv/{index}"} for index in range(5)]
    assert stream_length() == 0
