"""Policies as code (SPEC §6): `policies export` and `policies import` round-trip every field,
a file is read strictly (every problem named with its entry, nothing applied), an import shows
its diff and applies it in one transaction, each change a new version and an audit event."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from guardrails import policies as policy_changes
from guardrails import policyfile
from guardrails.models import Policy, PolicyVersion
from tests.guardrails.policies import policy_fields

pytestmark = pytest.mark.django_db

SEEDED = [
    "database_mutation",
    "database_query",
    "delete_resource",
    "deploy_to_production",
    "external_api_call",
    "read_file",
    "run_command",
    "write_file",
]


def policies(*args: str) -> str:
    out = io.StringIO()
    call_command("policies", *args, stdout=out)
    return out.getvalue()


def export() -> dict[str, Any]:
    body = yaml.safe_load(policies("export"))
    assert isinstance(body, dict)
    return body


def import_text(tmp_path: Path, text: str, *options: str) -> str:
    path = tmp_path / "policies.yaml"
    path.write_text(text, encoding="utf-8")
    return policies("import", str(path), *options)


def import_body(tmp_path: Path, body: dict[str, Any], *options: str) -> str:
    return import_text(tmp_path, yaml.safe_dump(body, sort_keys=False), *options)


def entry(body: dict[str, Any], name: str, scope: str = "global") -> dict[str, Any]:
    found = [p for p in body["policies"] if p["name"] == name and p["scope"] == scope]
    assert len(found) == 1, found
    return found[0]


def global_policy(name: str) -> Policy:
    return Policy.objects.select_related("agent").get(name=name, scope="global")


def policy_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event_type="policy.changed").order_by("sequence"))


def full_fields(**overrides: Any) -> dict[str, Any]:
    """A policy in the file's form with every field given."""
    return policy_fields(**overrides)


# --- export -> import ----------------------------------------------------------------------


def test_importing_what_export_wrote_changes_nothing(tmp_path, make_agent):
    make_agent("deploy-bot", team="platform")
    policy_changes.save_policy(
        fields=full_fields(name="read_file", scope="team", team="platform", rate_limit_per_hour=5)
    )
    policy_changes.save_policy(
        fields=full_fields(name="read_file", scope="agent", agent="deploy-bot", sensitive=True)
    )
    text = policies("export")
    versions, events = PolicyVersion.objects.count(), AuditEvent.objects.count()

    out = import_text(tmp_path, text)

    assert out.strip() == "No changes: the policies are what the file says."
    assert PolicyVersion.objects.count() == versions
    assert AuditEvent.objects.count() == events
    assert policies("export") == text


def test_export_writes_every_seeded_policy_with_every_field():
    body = export()
    assert body["version"] == 1
    assert [p["name"] for p in body["policies"]] == SEEDED
    assert all(list(p) == list(policyfile.FIELDS) for p in body["policies"])
    assert entry(body, "external_api_call") == full_fields(
        name="external_api_call",
        description="Calls to outside services: at most $1.00 a call.",
        category="external_api",
        risk_level="medium",
        max_cost_cents=100,
        rate_limit_per_hour=500,
    )


# Strings that YAML would read back as something else if they were written unquoted.
TRICKY_STRINGS = ["yes", "no", "on", "null", "~", "2024-01-01", "0x1F", "1e3", "- item", "#x: y"]

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "pattern": "^/srv/", "maxLength": 200},
        "ratio": {"type": "number", "minimum": 0, "maximum": 0.75},
        "mode": {"enum": ["fast", "safe", None, "yes", 3]},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    },
    "required": ["path"],
    "additionalProperties": False,
}


def test_every_field_survives_a_round_trip_through_yaml(tmp_path, make_agent):
    make_agent("deploy-bot", team="platform")
    wanted = [
        full_fields(
            name="export_report",
            description="Multi-line, ünïcode: “quotes”\nand a second line: with a colon.",
            category="external_api",
            risk_level="high",
            requires_approval=True,
            forbidden_patterns=[r"\.env$", r"(?i)api[_-]?key\s*=", r"^/etc/", *TRICKY_STRINGS],
            allowed_resources=["/srv/reports/", "s3://bucket/exports", *TRICKY_STRINGS],
            max_cost_cents=250,
            rate_limit_per_hour=40,
            sensitive=True,
            params_schema=SCHEMA,
            enabled=False,
        ),
        full_fields(
            name="export_report",
            scope="team",
            team="platform",
            category="read",
            risk_level="medium",
            max_cost_cents=0,
            rate_limit_per_hour=0,
        ),
        full_fields(
            name="export_report",
            scope="agent",
            agent="deploy-bot",
            category="database",
            risk_level="critical",
            forbidden_patterns=["DROP"],
            sensitive=True,
            params_schema={"type": "object"},
        ),
    ]
    body = export()
    body["policies"] += wanted

    out = import_body(tmp_path, body)

    assert out.splitlines() == [
        "+ export_report: new policy",
        "+ export_report (team platform): new policy",
        "+ export_report (agent deploy-bot): new policy",
        "Applied 3 change(s) in one transaction.",
    ]
    by_scope = {p["scope"]: p for p in wanted}
    stored = Policy.objects.filter(name="export_report").select_related("agent")
    assert {p.scope: policyfile.snapshot(p) for p in stored} == by_scope
    exported = [p for p in export()["policies"] if p["name"] == "export_report"]
    assert {p["scope"]: p for p in exported} == by_scope
    # ...and that file, read back, is what is there.
    assert import_text(tmp_path, policies("export")).startswith("No changes")


def test_a_file_may_leave_out_fields_that_have_defaults(tmp_path):
    body = export()
    body["policies"].append({"name": "list_files", "category": "read", "risk_level": "low"})

    import_body(tmp_path, body)

    assert policyfile.snapshot(global_policy("list_files")) == full_fields(
        name="list_files", category="read", risk_level="low"
    )


# --- a file is read strictly ---------------------------------------------------------------


def parse_problems(text: str, agent_names: frozenset[str] = frozenset()) -> list[str]:
    with pytest.raises(policyfile.FileProblem) as refused:
        policyfile.parse(text, agent_names=set(agent_names))
    return refused.value.problems


def one_policy(**fields: Any) -> str:
    given = {"name": "probe_action", "category": "read", "risk_level": "low", **fields}
    return yaml.safe_dump({"version": 1, "policies": [given]}, sort_keys=False)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"colour": "red", "owner": "x"}, "unknown field(s) colour, owner."),
        ({"rate_limit_per_hour": "ten"}, "rate_limit_per_hour: a whole number"),
        ({"max_cost_cents": 1.5}, "max_cost_cents: a whole number"),
        ({"max_cost_cents": True}, "max_cost_cents: a whole number"),
        ({"rate_limit_per_hour": -1}, "rate_limit_per_hour: from 0 to"),
        ({"enabled": 1}, "enabled: true or false."),
        ({"requires_approval": "sometimes"}, "requires_approval: true or false."),
        ({"sensitive": None}, "sensitive: true or false."),
        ({"description": 5}, "description: text."),
        ({"category": "teleport"}, "category: one of read, write"),
        ({"risk_level": "extreme"}, "risk_level: one of low, medium, high, critical."),
        ({"name": 5}, "name: the action's name"),
        ({"name": " padded "}, "name: no spaces around it"),
        ({"forbidden_patterns": "secret"}, "Forbidden patterns are a list of strings."),
        ({"allowed_resources": ["/srv/", ""]}, "allowed_resources: a list of non-empty"),
        ({"forbidden_patterns": ["(?<=key)=\\w+"]}, "is not a pattern RE2 accepts"),
        ({"forbidden_patterns": ["(a)\\1"]}, "is not a pattern RE2 accepts"),
        ({"forbidden_patterns": [""]}, "An empty pattern would match everything."),
        ({"params_schema": {"type": "nonsense"}}, "params_schema: Not a usable JSON Schema"),
        ({"params_schema": "a string"}, "params_schema: A JSON Schema is a JSON object."),
        ({"params_schema": {"$ref": "https://example.com/s.json"}}, "params_schema: Not a usable"),
        (
            {"params_schema": {"type": "string", "pattern": "(?<=a)b"}},
            "params_schema: Not a usable JSON Schema",
        ),
        ({"scope": "agent", "agent": "ghost-bot"}, "agent: there is no agent named 'ghost-bot'."),
        ({"scope": "team"}, "a team's policy names its team (and no agent)."),
        ({"scope": "global", "team": "platform"}, "a global policy names neither"),
        ({"scope": "planet"}, "scope: one of agent, team, global."),
    ],
)
def test_each_kind_of_problem_is_named_with_its_entry(fields, problem):
    problems = parse_problems(one_policy(**fields))
    assert len(problems) == 1, problems
    assert problems[0].startswith("policy 1"), problems
    assert problem in problems[0]


def test_every_problem_of_every_entry_is_named_at_once(tmp_path):
    body = export()
    body["policies"] += [
        {
            "name": "broken_one",
            "category": "read",
            "risk_level": "low",
            "colour": "red",
            "enabled": "yes please",
            "forbidden_patterns": ["ok", "(?<!x)y"],
            "params_schema": {"type": 12},
        },
        {"name": "broken_two", "scope": "agent", "agent": "ghost-bot", "category": "nope"},
        "not a mapping",
        dict(entry(body, "read_file")),  # read_file a second time
    ]
    before = policies("export")

    with pytest.raises(CommandError) as refused:
        import_body(tmp_path, body)

    message = str(refused.value)
    assert message.startswith("The file is not applied:")
    problems = message.splitlines()[1:]
    assert [problem.split(":")[0] for problem in problems] == [
        "policy 9 (broken_one)",
        "policy 9 (broken_one)",
        "policy 9 (broken_one)",
        "policy 9 (broken_one)",
        "policy 10 (broken_two)",
        "policy 10 (broken_two)",
        "policy 10 (broken_two)",
        "policy 11",
        "policy 12 (read_file)",
    ]
    assert "unknown field(s) colour." in problems[0]
    assert "enabled: true or false." in problems[1]
    assert "'(?<!x)y' is not a pattern RE2 accepts" in problems[2]
    assert "params_schema: Not a usable JSON Schema" in problems[3]
    assert "there is no agent named 'ghost-bot'" in problems[4]
    assert "category: one of" in problems[5]
    assert "risk_level: one of" in problems[6]
    assert "a policy is a mapping of its fields." in problems[7]
    assert "the same policy as policy 6." in problems[8]
    assert policies("export") == before


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("policies: [\n  - name: x\n", "Not YAML: "),
        ("policies:\n\t- name: x\n", "Not YAML: "),
        ("- name: read_file\n- name: write_file\n", "The file needs a `policies:` list"),
        ("version: 1\n", "The file needs a `policies:` list"),
        ("policies:\n  read_file: {}\n", "The file needs a `policies:` list"),
        ("", "The file needs a `policies:` list"),
        ("just some words\n", "The file needs a `policies:` list"),
    ],
)
def test_a_file_that_is_not_a_policy_file_is_refused_saying_so(tmp_path, text, problem):
    before = policies("export")
    with pytest.raises(CommandError) as refused:
        import_text(tmp_path, text)
    assert problem in str(refused.value)
    assert policies("export") == before


def test_unknown_top_level_keys_and_another_format_version_are_both_named():
    text = "version: 2\nowner: platform\npolicies: []\n"
    assert parse_problems(text) == [
        "Unknown top-level key(s): owner.",
        "This is format version 2; expected 1.",
    ]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        # The column holds up to 2^31 - 1: a larger limit must be refused, not wrapped around
        # or reported as a duplicate.
        ({"rate_limit_per_hour": 2**32 + 7}, "rate_limit_per_hour"),
        ({"rate_limit_per_hour": 10**12}, "rate_limit_per_hour"),
        ({"scope": "team", "team": "t" * 101}, "team"),
        ({"description": "before\x00after"}, "description"),
        ({"forbidden_patterns": ["a\x00b"]}, "forbidden_patterns"),
    ],
)
def test_values_the_database_cannot_hold_are_refused_naming_the_entry(tmp_path, fields, named):
    body = export()
    body["policies"].append({"name": "probe_action", "category": "read", "risk_level": "low"})
    body["policies"][-1].update(fields)
    before = policies("export")

    with pytest.raises(CommandError) as refused:
        import_body(tmp_path, body)

    assert "policy 9 (probe_action)" in str(refused.value)
    assert named in str(refused.value)
    assert policies("export") == before


# --- the diff ------------------------------------------------------------------------------


def test_an_import_shows_each_created_changed_and_deleted_policy(tmp_path, make_agent):
    make_agent("deploy-bot")
    policy_changes.save_policy(
        fields=full_fields(name="read_file", scope="agent", agent="deploy-bot")
    )
    body = export()
    body["policies"] = [
        p
        for p in body["policies"]
        if p["name"] != "delete_resource" and not (p["name"] == "read_file" and p["agent"])
    ]
    run_command = entry(body, "run_command")
    run_command["requires_approval"] = False
    run_command["rate_limit_per_hour"] = 2
    run_command["forbidden_patterns"] = ["mkfs", "shutdown"]
    write_file = entry(body, "write_file")
    write_file["params_schema"] = {"type": "object", "required": ["path"]}
    write_file["description"] = ""
    body["policies"].append(
        full_fields(name="read_file", scope="team", team="platform", risk_level="medium")
    )

    out = import_body(tmp_path, body)

    assert out.splitlines() == [
        "~ run_command:",
        "    requires_approval: true -> false",
        r"    forbidden_patterns: [rm\s+-rf\s+/, dd\s+if=, mkfs, shutdown, reboot, killall]"
        " -> [mkfs, shutdown]",
        "    rate_limit_per_hour: 50 -> 2",
        "~ write_file:",
        "    description: 'Write operations: never system files, root''s home or Git config.'"
        " -> ''",
        "    params_schema: null -> {required: [path], type: object}",
        "+ read_file (team platform): new policy",
        "- delete_resource: removed",
        "- read_file (agent deploy-bot): removed",
        "Applied 5 change(s) in one transaction.",
    ]


def test_the_diff_lists_only_the_fields_that_changed():
    read_file = global_policy("read_file")
    after = {**policyfile.snapshot(read_file), "enabled": False, "sensitive": True}
    entries = [policyfile.Entry(after, 1)]

    changes = policyfile.diff(entries, [read_file])

    assert [(c.kind, c.label, c.fields) for c in changes] == [
        ("changed", "read_file", ["sensitive", "enabled"])
    ]
    assert changes[0].lines() == [
        "~ read_file:",
        "    sensitive: false -> true",
        "    enabled: true -> false",
    ]


# --- applying an import --------------------------------------------------------------------


def test_each_change_of_an_import_writes_a_version_and_an_audit_event(tmp_path, make_user):
    person = make_user("policy-owner", roles=("admin",))
    before_read = policyfile.snapshot(global_policy("read_file"))
    before_delete = policyfile.snapshot(global_policy("delete_resource"))
    body = export()
    body["policies"] = [p for p in body["policies"] if p["name"] != "delete_resource"]
    entry(body, "read_file")["forbidden_patterns"].append(r"\.key$")
    new = full_fields(name="list_files", scope="team", team="platform")
    body["policies"].append(new)
    first_event = AuditEvent.objects.order_by("-sequence").first()
    since = first_event.sequence if first_event else 0

    import_body(tmp_path, body, "--by", "policy-owner")

    read_file = global_policy("read_file")
    assert read_file.version == 2
    versions = list(PolicyVersion.objects.filter(created_by=person).order_by("id"))
    assert [(v.name, v.scope, v.team, v.version, v.change) for v in versions] == [
        ("delete_resource", "global", "", 2, "deleted"),
        ("read_file", "global", "", 2, "changed"),
        ("list_files", "team", "platform", 1, "created"),
    ]
    assert all(v.note == "policies import policies.yaml" for v in versions)
    assert versions[0].policy is None
    assert versions[0].snapshot == before_delete
    assert versions[1].snapshot == policyfile.snapshot(read_file)
    assert versions[2].snapshot == new

    events = [e for e in policy_events() if e.sequence > since]
    assert [(e.payload["name"], e.payload["change"]) for e in events] == [
        ("delete_resource", "deleted"),
        ("read_file", "changed"),
        ("list_files", "created"),
    ]
    assert all(e.actor_name == person.display_name for e in events)
    assert all(e.payload["source"] == "policies import policies.yaml" for e in events)
    assert (events[0].payload["from"], events[0].payload["to"]) == (before_delete, None)
    assert events[1].payload["from"] == before_read
    assert events[1].payload["to"]["forbidden_patterns"][-1] == r"\.key$"
    assert events[1].payload["to"] == policyfile.snapshot(read_file)
    assert (events[2].payload["from"], events[2].payload["to"]) == (None, new)


class Refused(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_an_import_is_one_transaction_a_failing_change_undoes_the_others(tmp_path, monkeypatch):
    before = policies("export")
    versions = list(PolicyVersion.objects.values_list("id", flat=True))
    events = AuditEvent.objects.count()
    body = export()
    body["policies"] = [p for p in body["policies"] if p["name"] != "delete_resource"]
    entry(body, "read_file")["rate_limit_per_hour"] = 7
    entry(body, "write_file")["rate_limit_per_hour"] = 8
    real_save = policy_changes.save_policy
    calls = []

    def save_then_fail(**kwargs: Any) -> Policy:
        calls.append(kwargs["fields"]["name"])
        if len(calls) == 2:
            raise Refused("the second change fails")
        return real_save(**kwargs)

    monkeypatch.setattr(policy_changes, "save_policy", save_then_fail)

    with pytest.raises(Refused):
        import_body(tmp_path, body)

    assert calls == ["read_file", "write_file"]  # the first save did run
    assert policies("export") == before
    assert global_policy("read_file").rate_limit_per_hour is None
    assert global_policy("delete_resource").version == 1
    assert list(PolicyVersion.objects.values_list("id", flat=True)) == versions
    assert AuditEvent.objects.count() == events


def test_versions_only_grow_and_a_deleted_policys_versions_stay(tmp_path):
    body = export()
    for limit in (30, 20):
        entry(body, "read_file")["rate_limit_per_hour"] = limit
        import_body(tmp_path, body)
    read_file = global_policy("read_file")
    assert read_file.version == 3
    body["policies"] = [p for p in body["policies"] if p["name"] != "read_file"]

    import_body(tmp_path, body)

    assert not Policy.objects.filter(name="read_file").exists()
    versions = list(PolicyVersion.objects.filter(name="read_file", scope="global").order_by("id"))
    assert [(v.version, v.change, v.policy_id) for v in versions] == [
        (1, "created", None),
        (2, "changed", None),
        (3, "changed", None),
        (4, "deleted", None),
    ]
    assert [v.snapshot["rate_limit_per_hour"] for v in versions] == [None, 30, 20, 20]


def test_saving_identical_fields_writes_no_version_and_no_audit_event():
    read_file = global_policy("read_file")
    versions, events = PolicyVersion.objects.count(), AuditEvent.objects.count()

    saved = policy_changes.save_policy(fields=policyfile.snapshot(read_file), policy=read_file)

    assert saved.version == 1
    assert PolicyVersion.objects.count() == versions
    assert AuditEvent.objects.count() == events


def test_changing_a_policy_back_is_a_change_too():
    read_file = global_policy("read_file")
    original = policyfile.snapshot(read_file)

    policy_changes.save_policy(fields={**original, "sensitive": True}, policy=read_file)
    policy_changes.save_policy(fields=original, policy=read_file)

    assert global_policy("read_file").version == 3
    assert list(
        PolicyVersion.objects.filter(name="read_file")
        .order_by("id")
        .values_list("change", "version")
    ) == [("created", 1), ("changed", 2), ("changed", 3)]
