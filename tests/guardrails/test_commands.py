"""`manage.py policies` (SPEC §6, §11): export, import FILE [--dry-run] [--by USERNAME], and
test ACTION --params JSON, which answers what the check would, recording nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import Agent
from audit.models import AuditEvent
from guardrails import policies as policy_changes
from guardrails import policyfile, services
from guardrails.counters import CHECK_LOG
from guardrails.models import Policy, PolicyVersion, Violation
from oversight.redis_clients import quick_client

pytestmark = pytest.mark.django_db


def policies(*args: str) -> str:
    out = io.StringIO()
    call_command("policies", *args, stdout=out)
    return out.getvalue()


def export() -> dict[str, Any]:
    body = yaml.safe_load(policies("export"))
    assert isinstance(body, dict)
    return body


def write(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return str(path)


def entry(body: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in body["policies"] if p["name"] == name and p["scope"] == "global"]
    return found


def answer_of(output: str) -> dict[str, Any]:
    """The JSON answer `policies test` prints on its last line."""
    answer = json.loads(output.strip().splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


def set_rate_limit(name: str, limit: int | None) -> None:
    policy = Policy.objects.get(name=name, scope="global")
    fields = {**policyfile.snapshot(policy), "rate_limit_per_hour": limit}
    policy_changes.save_policy(fields=fields, policy=policy)


def recorded() -> tuple[int, int, int]:
    return Violation.objects.count(), AuditEvent.objects.count(), quick_client().xlen(CHECK_LOG)


# --- export and import ---------------------------------------------------------------------


def test_export_prints_a_commented_yaml_file_of_every_policy():
    out = policies("export")

    assert out.startswith("# Oversight action policies (SPEC §6).")
    body = yaml.safe_load(out)
    assert body["version"] == 1
    assert len(body["policies"]) == Policy.objects.count() == 8
    assert policyfile.parse(out, agent_names=set())  # a file `import` reads as it is


def test_import_applies_the_file_and_names_the_person_given_with_by(tmp_path, make_user):
    person = make_user("release-manager", roles=("admin",))
    body = export()
    entry(body, "external_api_call")["max_cost_cents"] = 250

    out = policies("import", write(tmp_path, body), "--by", "release-manager")

    assert out.splitlines() == [
        "~ external_api_call:",
        "    max_cost_cents: 100 -> 250",
        "Applied 1 change(s) in one transaction.",
    ]
    assert Policy.objects.get(name="external_api_call").max_cost_cents == 250
    version = PolicyVersion.objects.filter(name="external_api_call").order_by("-id").first()
    assert version is not None
    assert (version.version, version.created_by, version.note) == (
        2,
        person,
        "policies import policies.yaml",
    )
    event = AuditEvent.objects.filter(event_type="policy.changed").get()
    assert (event.actor_type, event.actor_name) == ("user", person.display_name)
    assert event.payload["from"]["max_cost_cents"] == 100
    assert event.payload["to"]["max_cost_cents"] == 250


def test_import_without_by_is_recorded_as_the_system(tmp_path):
    body = export()
    entry(body, "external_api_call")["max_cost_cents"] = 250

    policies("import", write(tmp_path, body))

    event = AuditEvent.objects.filter(event_type="policy.changed").get()
    assert (event.actor_type, event.actor_name) == ("system", "")


def test_import_by_an_unknown_person_is_refused_before_anything_changes(tmp_path):
    body = export()
    entry(body, "external_api_call")["max_cost_cents"] = 250
    path = write(tmp_path, body)

    with pytest.raises(CommandError, match="There is no person named 'nobody'"):
        policies("import", path, "--by", "nobody")

    assert Policy.objects.get(name="external_api_call").max_cost_cents == 100


def test_import_dry_run_prints_the_diff_and_the_replay_and_changes_nothing(tmp_path):
    body = export()
    entry(body, "external_api_call")["max_cost_cents"] = 250
    versions, events = PolicyVersion.objects.count(), AuditEvent.objects.count()

    out = policies("import", write(tmp_path, body), "--dry-run")

    assert out.splitlines() == [
        "~ external_api_call:",
        "    max_cost_cents: 100 -> 250",
        "",
        "Replayed 0 checks of the last 7 days: 0 decisions would change.",
        "Dry run: nothing was changed.",
    ]
    assert Policy.objects.get(name="external_api_call").max_cost_cents == 100
    assert (PolicyVersion.objects.count(), AuditEvent.objects.count()) == (versions, events)


def test_import_reads_the_file_from_stdin_given_a_dash(monkeypatch):
    body = export()
    entry(body, "external_api_call")["max_cost_cents"] = 250
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(body)))

    out = policies("import", "-")

    assert out.splitlines()[-1] == "Applied 1 change(s) in one transaction."
    assert Policy.objects.get(name="external_api_call").max_cost_cents == 250


def test_import_of_a_missing_file_or_a_bad_one_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        policies("import", str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("policies:\n  - name: read_file\n    colour: red\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"(?s)not applied:.*policy 1 \(read_file\): unknown"):
        policies("import", str(bad))
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("policies: []\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(CommandError, match="Cannot read"):
        policies("import", str(latin))


# --- test ----------------------------------------------------------------------------------


def test_policies_test_answers_what_the_check_answers_and_records_nothing(make_agent):
    agent = make_agent("reader-bot").agent
    params = {"path": "/app/.env"}
    before = recorded()

    out = policies("test", "read_file", "--agent", "reader-bot", "--params", json.dumps(params))

    assert recorded() == before  # no violation, no audit event, nothing in the check log
    simulated = answer_of(out)
    checked = services.check_action(agent=agent, action="read_file", params=params).as_json()
    assert checked["violation_id"] is not None  # the real check does record its deny
    assert simulated == {**checked, "violation_id": None}
    assert simulated["decision"] == "deny"
    assert simulated["reasons"] == [
        {
            "code": "forbidden_pattern",
            "effect": "deny",
            "message": r"path matches the forbidden pattern \.env$",
            "param": "path",
            "pattern": r"\.env$",
        }
    ]
    assert out.splitlines()[:3] == [
        "decision: deny",
        "risk: low  category: read",
        "policy: read_file v1 (global)",
    ]


def test_policies_test_without_an_agent_answers_for_any_agent():
    before = recorded()

    out = policies("test", "read_file", "--params", '{"path": "/app/.env"}')

    answer = answer_of(out)
    assert answer["decision"] == "deny"
    assert [reason["code"] for reason in answer["reasons"]] == ["forbidden_pattern"]
    assert answer["policy"] == {"name": "read_file", "version": 1, "scope": "global"}
    assert recorded() == before


@pytest.mark.parametrize(
    ("args", "decision", "codes"),
    [
        (["read_file", "--params", '{"path": "/srv/a.txt"}'], "allow", []),
        (["read_file", "--confidence", "0.05"], "deny", ["confidence_too_low"]),
        (["read_file", "--confidence", "0.2"], "require_approval", ["confidence_very_low"]),
        (["external_api_call", "--cost", "101"], "deny", ["cost_limit", "autonomy_level"]),
        (["external_api_call", "--cost", "100"], "require_approval", ["autonomy_level"]),
        (["launch_rocket"], "deny", ["unknown_action"]),
    ],
)
def test_policies_test_passes_confidence_and_cost_to_the_check(make_agent, args, decision, codes):
    agent = make_agent("tester-bot").agent
    out = policies("test", *args, "--agent", "tester-bot")

    answer = answer_of(out)
    assert (answer["decision"], [r["code"] for r in answer["reasons"]]) == (decision, codes)
    options = dict(zip(args[1::2], args[2::2], strict=True))
    checked = services.check_action(
        agent=agent,
        action=args[0],
        params=json.loads(options.get("--params", "{}")),
        confidence=float(options["--confidence"]) if "--confidence" in options else None,
        estimated_cost_cents=int(options["--cost"]) if "--cost" in options else None,
    )
    assert checked.as_json() == {**answer, "violation_id": checked.violation_id}


def test_policies_test_of_a_sensitive_action_records_no_data_access(make_agent):
    read_file = Policy.objects.get(name="read_file", scope="global")
    policy_changes.save_policy(
        fields={**policyfile.snapshot(read_file), "sensitive": True}, policy=read_file
    )
    agent = make_agent("reader-bot").agent
    accesses = AuditEvent.objects.filter(event_type="data.accessed")

    out = policies("test", "read_file", "--agent", "reader-bot", "--params", '{"path": "/srv/a"}')

    assert answer_of(out)["decision"] == "allow"
    assert not accesses.exists()
    services.check_action(agent=agent, action="read_file", params={"path": "/srv/a"})
    assert accesses.count() == 1  # the real check does record it


def test_policies_test_uses_no_rate_limit_slot(make_agent):
    set_rate_limit("read_file", 1)
    agent = make_agent("counted-bot").agent
    args = ("test", "read_file", "--agent", "counted-bot", "--params", '{"path": "/srv/a.txt"}')

    for _ in range(3):
        out = policies(*args)
        assert answer_of(out)["decision"] == "allow"
        assert "rate: 0 of 1 this hour" in out.splitlines()

    first = services.check_action(agent=agent, action="read_file", params={"path": "/srv/a"})
    second = services.check_action(agent=agent, action="read_file", params={"path": "/srv/b"})
    assert (first.decision, second.decision) == ("allow", "deny")
    assert [reason.code for reason in second.verdict.reasons] == ["rate_limited"]
    # ...and the simulator now says what the check says, still without counting.
    after = answer_of(policies(*args))
    assert (after["decision"], [r["code"] for r in after["reasons"]]) == ("deny", ["rate_limited"])
    assert quick_client().xlen(CHECK_LOG) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "{not json"], "--params is not JSON"),
        (["--params", '["a", "list"]'], "--params must be a JSON object"),
        (["--params", '"text"'], "--params must be a JSON object"),
        (["--params", "[" * 2000 + "]" * 2000], "--params"),
        (["--params", '{"a": ' * 70 + "1" + "}" * 70], "nested at most 64 levels"),
        (["--agent", "ghost-bot"], "There is no agent named 'ghost-bot'"),
        (["--confidence", "1.5"], "--confidence is from 0 to 1"),
        (["--cost", "-1"], "--cost is a number of cents"),
    ],
)
def test_policies_test_refuses_bad_input_with_a_command_error(args, message):
    before = recorded()
    with pytest.raises(CommandError, match=message):
        policies("test", "read_file", *args)
    assert recorded() == before


def test_policies_test_for_a_paused_agent_says_so(make_agent):
    agent = make_agent("paused-bot").agent
    Agent.objects.filter(pk=agent.pk).update(status="paused")

    answer = answer_of(policies("test", "read_file", "--agent", "paused-bot"))

    assert answer["decision"] == "deny"
    assert answer["reasons"][0]["code"] == "agent_paused"
    assert not Violation.objects.exists()
