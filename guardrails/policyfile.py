"""Policies as code (SPEC §6): the YAML form of the policies, read back strictly.

`document` writes every field of every policy; `parse` reads such a file back into `Entry`s,
refusing anything it would have to guess (unknown keys, wrong types, patterns RE2 refuses,
unusable schemas, agents that do not exist, the same policy twice), each problem named with
the entry it is in. `diff` compares entries with the policies in the database. Nothing here
writes: `guardrails.policies.import_policies` applies a parsed file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from approvals.models import RiskLevel
from budgets.models import Scope
from guardrails import matching, rules
from guardrails.models import Category, Policy
from oversight.fields import nested_deeper_than, unstorable_text
from oversight.text import has_control_characters

FORMAT_VERSION = 1
HEADER = (
    "# Oversight action policies (SPEC §6). Edit, then check what would change with\n"
    "#   python manage.py policies import FILE --dry-run\n"
    "# and apply with `python manage.py policies import FILE` (one transaction, audited).\n"
    "# Patterns are RE2 regular expressions, case-insensitive; a policy scoped to a team or an\n"
    "# agent overrides the global one of the same name.\n"
)
# The fields of a policy in the file, in the order they are written.
FIELDS = (
    "name",
    "scope",
    "team",
    "agent",
    "description",
    "category",
    "risk_level",
    "requires_approval",
    "forbidden_patterns",
    "allowed_resources",
    "max_cost_cents",
    "rate_limit_per_hour",
    "sensitive",
    "params_schema",
    "enabled",
)
SETTINGS = FIELDS[4:]  # what a change may change; the first four say which policy it is


def snapshot(policy: Policy) -> dict[str, Any]:
    """Every field of `policy` as the file writes it (also each version's and audit event's)."""
    return {
        "name": policy.name,
        "scope": policy.scope,
        "team": policy.team,
        "agent": policy.agent.name if policy.agent_id and policy.agent else "",
        "description": policy.description,
        "category": policy.category,
        "risk_level": policy.risk_level,
        "requires_approval": policy.requires_approval,
        "forbidden_patterns": list(policy.forbidden_patterns),
        "allowed_resources": list(policy.allowed_resources),
        "max_cost_cents": policy.max_cost_cents,
        "rate_limit_per_hour": policy.rate_limit_per_hour,
        "sensitive": policy.sensitive,
        "params_schema": policy.params_schema,
        "enabled": policy.enabled,
    }


def identity(fields: dict[str, Any]) -> tuple[str, str, str, str]:
    return fields["name"], fields["scope"], fields["team"], fields["agent"]


class _Dumper(yaml.SafeDumper):
    """Writes every value out: no anchors and aliases, which the loader refuses."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def document(policies: Iterable[Policy]) -> str:
    body = {
        "version": FORMAT_VERSION,
        "policies": [snapshot(policy) for policy in policies],
    }
    text = yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + text


@dataclass(frozen=True)
class Entry:
    """One policy of a file: its settings, checked, and where it was in the file."""

    fields: dict[str, Any]
    position: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        return identity(self.fields)

    @property
    def label(self) -> str:
        name, scope, team, agent = self.key
        return name + {"global": "", "team": f" (team {team})", "agent": f" (agent {agent})"}[scope]


class FileProblem(ValueError):
    """What is wrong with a policy file; every problem, each with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# A file may share lists with YAML anchors and aliases, but not expand past this many values:
# a few hundred bytes of nested aliases make millions (a billion laughs).
MAX_VALUES = 100_000


def parse(text: str, *, agent_names: set[str]) -> list[Entry]:
    """The file's policies, checked; raises FileProblem listing everything wrong."""
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FileProblem([f"Not YAML: {exc}"]) from None
    except RecursionError:
        raise FileProblem(["Not a policy file: nested too deeply."]) from None
    if _expands_past(body, MAX_VALUES):
        raise FileProblem(
            [f"The file holds more than {MAX_VALUES} values once its aliases are written out."]
        )
    if not isinstance(body, dict) or not isinstance(body.get("policies"), list):
        raise FileProblem(["The file needs a `policies:` list (see `policies export`)."])
    unknown_top = sorted(set(body) - {"version", "policies"})
    problems = [f"Unknown top-level key(s): {', '.join(map(str, unknown_top))}."] * bool(
        unknown_top
    )
    if body.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        problems.append(f"This is format version {body.get('version')!r}; expected 1.")
    entries: list[Entry] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for position, raw in enumerate(body["policies"], start=1):
        where = f"policy {position}"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            where += f" ({raw['name']})"
        fields, found = check_fields(raw, agent_names=agent_names)
        problems += [f"{where}: {problem}" for problem in found]
        if found:
            continue
        entry = Entry(fields, position)
        if entry.key in seen:
            problems.append(f"{where}: the same policy as policy {seen[entry.key]}.")
            continue
        seen[entry.key] = position
        entries.append(entry)
    if problems:
        raise FileProblem(problems)
    return entries


def check_fields(raw: object, *, agent_names: set[str]) -> tuple[dict[str, Any], list[str]]:
    """A policy's fields with defaults filled in, and what is wrong with them."""
    if not isinstance(raw, dict):
        return {}, ["a policy is a mapping of its fields."]
    problems = []
    unknown = sorted(set(map(str, raw)) - set(FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)}.")
    fields: dict[str, Any] = {
        "name": raw.get("name"),
        "scope": raw.get("scope", Scope.GLOBAL),
        "team": raw.get("team") or "",
        "agent": raw.get("agent") or "",
        "description": raw.get("description") or "",
        "category": raw.get("category"),
        "risk_level": raw.get("risk_level"),
        "requires_approval": raw.get("requires_approval", False),
        "forbidden_patterns": raw.get("forbidden_patterns") or [],
        "allowed_resources": raw.get("allowed_resources") or [],
        "max_cost_cents": raw.get("max_cost_cents"),
        "rate_limit_per_hour": raw.get("rate_limit_per_hour"),
        "sensitive": raw.get("sensitive", False),
        "params_schema": raw.get("params_schema"),
        "enabled": raw.get("enabled", True),
    }
    problems += setting_problems(fields, agent_names=agent_names)
    return fields, problems


# The largest values the columns hold (guardrails.models.Policy).
MAX_RATE_LIMIT = 2**31 - 1
MAX_COST_CENTS = 10**12
LENGTHS = {"name": 200, "team": 100, "agent": 100}


def setting_problems(fields: dict[str, Any], *, agent_names: set[str] | None) -> list[str]:
    """Every problem with a policy's fields (the file's and the admin form's one definition).
    `agent_names`: the agents that exist, or None not to check them."""
    problems = []
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > LENGTHS["name"]:
        problems.append("name: the action's name, 1 to 200 characters.")
    elif name != name.strip() or has_control_characters(name):
        problems.append("name: no spaces around it and no control characters.")
    elif name != rules.action_key(name):
        problems.append(
            f"name: {rules.action_key(name)!r}, in lower case: agents' actions are matched to "
            "policies whatever their case."
        )
    scope, team, agent = fields.get("scope"), fields.get("team"), fields.get("agent")
    if scope not in Scope.values:
        problems.append(f"scope: one of {', '.join(Scope.values)}.")
    elif not isinstance(team, str) or not isinstance(agent, str):
        problems.append("team and agent are names (text).")
    elif len(team) > LENGTHS["team"] or len(agent) > LENGTHS["agent"]:
        problems.append("team and agent: at most 100 characters.")
    elif scope == Scope.TEAM and (not team or agent):
        problems.append("a team's policy names its team (and no agent).")
    elif scope == Scope.AGENT and (not agent or team):
        problems.append("an agent's policy names its agent (and no team).")
    elif scope == Scope.GLOBAL and (team or agent):
        problems.append("a global policy names neither a team nor an agent.")
    elif scope == Scope.AGENT and agent_names is not None and agent not in agent_names:
        problems.append(f"agent: there is no agent named {agent!r}.")
    if fields.get("category") not in Category.values:
        problems.append(f"category: one of {', '.join(Category.values)}.")
    if fields.get("risk_level") not in RiskLevel.values:
        problems.append(f"risk_level: one of {', '.join(RiskLevel.values)}.")
    for flag in ("requires_approval", "sensitive", "enabled"):
        if not isinstance(fields.get(flag), bool):
            problems.append(f"{flag}: true or false.")
    if not isinstance(fields.get("description"), str):
        problems.append("description: text.")
    for limit, most in (
        ("max_cost_cents", MAX_COST_CENTS),
        ("rate_limit_per_hour", MAX_RATE_LIMIT),
    ):
        value = fields.get(limit)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{limit}: a whole number, or nothing for no limit.")
        elif value is not None and not 0 <= value <= most:
            problems.append(f"{limit}: from 0 to {most}.")
    problems += [f"forbidden_patterns: {p}" for p in matching.pattern_problems(
        fields.get("forbidden_patterns"))]  # fmt: skip
    resources = fields.get("allowed_resources")
    if not isinstance(resources, list) or not all(isinstance(r, str) and r for r in resources):
        problems.append("allowed_resources: a list of non-empty prefixes.")
    schema = fields.get("params_schema")
    if schema is not None:
        problems += _schema_problems(schema)
    for key in ("name", "team", "agent", "description", "allowed_resources", "params_schema"):
        if unstorable_text(fields.get(key)):
            problems.append(f"{key}: no NUL characters or lone surrogates.")
    return problems


def _expands_past(value: Any, limit: int) -> bool:
    """Whether `value`, each alias counted as often as it is used, holds more than `limit`
    values (iterative, and stops counting at the limit)."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
            seen += len(item)
        elif isinstance(item, list):
            stack.extend(item)
    return False


# A params schema is copied into every version, audit event and GET /policies answer.
MAX_SCHEMA_BYTES = 16 * 1024


def _schema_problems(schema: object) -> list[str]:
    if nested_deeper_than(schema, 32):
        return ["params_schema: nested more than 32 levels."]
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError):
        return ["params_schema: plain JSON only."]
    if size > MAX_SCHEMA_BYTES:
        return [f"params_schema: {size} bytes; at most {MAX_SCHEMA_BYTES}."]
    try:
        rules.schema_validator(schema)
    except rules.PolicyProblem as exc:
        return [f"params_schema: {message}" for message in exc.errors["params_schema"]]
    return []


@dataclass(frozen=True)
class Change:
    kind: str  # created, changed, deleted
    label: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def fields(self) -> list[str]:
        if self.before is None or self.after is None:
            return []
        return [name for name in SETTINGS if self.before.get(name) != self.after.get(name)]

    def lines(self) -> list[str]:
        """The change as a person reads it in a diff."""
        if self.kind == "created":
            return [f"+ {self.label}: new policy"]
        if self.kind == "deleted":
            return [f"- {self.label}: removed"]
        assert self.before is not None
        assert self.after is not None
        shown = [f"~ {self.label}:"]
        for name in self.fields:
            shown.append(f"    {name}: {_brief(self.before[name])} -> {_brief(self.after[name])}")
        return shown


def _brief(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= 120 else text[:117] + "..."


def diff(entries: list[Entry], current: Iterable[Policy]) -> list[Change]:
    """What applying `entries` would do to the `current` policies: each created, changed and
    deleted policy (a policy missing from the file is deleted)."""
    existing = {identity(snapshot(policy)): snapshot(policy) for policy in current}
    wanted = {entry.key: entry for entry in entries}
    changes: list[Change] = []
    for key, entry in wanted.items():
        before = existing.get(key)
        if before is None:
            changes.append(Change("created", entry.label, None, entry.fields))
        elif any(before[name] != entry.fields[name] for name in SETTINGS):
            changes.append(Change("changed", entry.label, before, entry.fields))
    for key, before in existing.items():
        if key not in wanted:
            label = Entry(before, 0).label
            changes.append(Change("deleted", label, before, None))
    return changes
