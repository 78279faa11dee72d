"""Changing policies: `save_policy`, `delete_policy` (the admin, the pages, the `policies`
command), and policies as code (`import_policies`, with `replay` of the last days' checks).

Each change writes a version and a `policy.changed` audit event in its transaction; on commit
every process's policy set is stale and reloads on its next check (`guardrails.services`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from agents.models import Agent, AgentStatus
from approvals.binding import params_sha256
from audit.events import EventType
from audit.services import record_event
from budgets import admission
from budgets.models import Scope
from guardrails import policyfile, rules, selectors
from guardrails.models import (
    CheckPurpose,
    CheckRecord,
    Policy,
    PolicySetVersion,
    PolicyVersion,
    VersionChange,
)
from guardrails.services import HOLD

logger = logging.getLogger(__name__)

REPLAY_DAYS = 7


# --- policies ------------------------------------------------------------------------------


def _resolve_agent(fields: dict[str, Any]) -> Agent | None:
    if fields.get("scope") != Scope.AGENT:
        return None
    agent = Agent.objects.filter(name=fields.get("agent")).first()
    if agent is None:
        raise ValidationError({"agent": [f"There is no agent named {fields.get('agent')!r}."]})
    return agent


@transaction.atomic
def save_policy(
    *,
    fields: dict[str, Any],
    policy: Policy | None = None,
    actor: User | None = None,
    source: str = "admin",
) -> Policy:
    """Create a policy (`policy` None) or change one, from its fields in the policy file's
    form (`guardrails.policyfile.snapshot`). Each change is a new version; saving the same
    fields again changes nothing. Raises ValidationError naming what is wrong."""
    problems = policyfile.setting_problems(fields, agent_names=None)
    if problems:
        raise ValidationError(problems)
    agent = _resolve_agent(fields)
    _take_turn()
    before: dict[str, Any] | None = None
    if policy is not None and policy.pk:
        policy = (
            Policy.objects.select_for_update(of=("self",)).select_related("agent").get(pk=policy.pk)
        )
        before = policyfile.snapshot(policy)
        if before == {name: fields[name] for name in policyfile.FIELDS}:
            return policy
    else:
        policy = Policy(version=0)
    for name in policyfile.FIELDS:
        if name != "agent":
            setattr(policy, name, fields[name])
    policy.agent = agent
    policy.version += 1
    policy.updated_at = timezone.now()
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UniqueViolation) or "UNIQUE" in str(exc):
            raise ValidationError(
                f"There is a policy for {fields['name']} with this scope already; change that one."
            ) from None
        raise ValidationError(f"The database refuses this policy: {exc}") from None
    except DataError as exc:
        raise ValidationError(f"The database refuses this policy: {exc}") from None
    change = VersionChange.CHANGED if before is not None else VersionChange.CREATED
    _version_and_audit(policy, policyfile.snapshot(policy), before, change, actor, source)
    return policy


@transaction.atomic
def delete_policy(*, policy: Policy, actor: User | None = None, source: str = "admin") -> None:
    """Remove a policy; its versions stay (decisions refer to them). The action falls back to
    the team's or global policy of its name, or becomes unknown."""
    locked = (
        Policy.objects.select_for_update(of=("self",)).select_related("agent").get(pk=policy.pk)
    )
    before = policyfile.snapshot(locked)
    locked.version += 1
    _version_and_audit(locked, before, before, VersionChange.DELETED, actor, source)
    locked.delete()


def _take_turn() -> None:
    """Raise the policy set's version, first in a change's transaction (before any other lock,
    the audit chain's included): concurrent changes wait here for each other, so versions grow
    in commit order and none is published before the changes below it have committed."""
    if not PolicySetVersion.objects.filter(pk=1).update(version=F("version") + 1):
        try:
            with transaction.atomic():
                PolicySetVersion.objects.create(pk=1, version=1)
        except IntegrityError:  # created meanwhile by another change: take a turn on it
            PolicySetVersion.objects.filter(pk=1).update(version=F("version") + 1)


def _version_and_audit(
    policy: Policy,
    after: dict[str, Any],
    before: dict[str, Any] | None,
    change: str,
    actor: User | None,
    source: str,
) -> None:
    PolicyVersion.objects.create(
        policy=policy,
        name=policy.name,
        scope=policy.scope,
        team=policy.team,
        agent_name=policy.agent.name if policy.agent else "",
        version=policy.version,
        change=change,
        snapshot=after,
        created_by=actor,
        note=source[:300],
    )
    selectors.POLICIES.changed()
    record_event(
        event_type=EventType.POLICY_CHANGED,
        actor=actor,
        subject=("policy", str(policy.pk)),
        payload={
            "name": policy.name,
            "scope": policy.scope,
            "version": policy.version,
            "change": change,
            "from": before,
            "to": None if change == VersionChange.DELETED else after,
            "source": source,
        },
    )


# --- policies as code ----------------------------------------------------------------------


@dataclass
class Replay:
    """What the last days of checks would have answered under a new policy file."""

    replayed: int = 0
    skipped: int = 0  # logged without their arguments (too large to keep)
    changed: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)

    def lines(self, limit: int = 50) -> list[str]:
        total = sum(self.changed.values())
        skipped = (
            f" ({self.skipped} could not be: their arguments were too large to keep)"
            if self.skipped
            else ""
        )
        shown = [
            f"Replayed {self.replayed} checks of the last {REPLAY_DAYS} days{skipped}: "
            f"{total} decisions would change."
        ]
        for (agent, action, old, new, codes), times in self.changed.most_common(limit):
            why = f" ({codes})" if codes else ""
            shown.append(f"  {times:>6} x {agent} {action}: {old} -> {new}{why}")
        if len(self.changed) > limit:
            shown.append(f"  … and {len(self.changed) - limit} more kinds of change")
        return shown


@dataclass(frozen=True)
class ImportReport:
    changes: list[policyfile.Change]
    replay: Replay | None
    applied: bool


def import_policies(
    *, text: str, actor: User | None = None, dry_run: bool = False, source: str = "import"
) -> ImportReport:
    """Make the policies what the file says, in one transaction: each created, changed and
    deleted policy a new version and an audit event. With `dry_run`, change nothing and replay
    the last week's checks against the file instead. Raises `policyfile.FileProblem`."""
    agent_names = set(Agent.objects.values_list("name", flat=True))
    entries = policyfile.parse(text, agent_names=agent_names)
    current = list(Policy.objects.select_related("agent"))
    changes = policyfile.diff(entries, current)
    if dry_run:
        return ImportReport(changes, replay(entries), applied=False)
    by_key = {policyfile.identity(policyfile.snapshot(p)): p for p in current}
    with transaction.atomic():
        for change in changes:
            if change.kind == "deleted":
                assert change.before is not None
                policy = by_key[policyfile.identity(change.before)]
                delete_policy(policy=policy, actor=actor, source=source)
        for change in changes:
            if change.kind != "deleted":
                assert change.after is not None
                existing = by_key.get(policyfile.identity(change.after))
                save_policy(fields=change.after, policy=existing, actor=actor, source=source)
    return ImportReport(changes, None, applied=True)


def replay(entries: list[policyfile.Entry], *, days: int = REPLAY_DAYS) -> Replay:
    """Answer the logged checks of the last `days` under today's policies and under `entries`,
    and count the decisions that differ. The replay counts each hour's rate limits as it goes,
    as the check does (a create right after its check uses the slot the check held). Every
    agent is taken as active and its budgets as they are now, for both: a file changes
    neither."""
    agents = {agent.pk: agent for agent in Agent.objects.all()}
    today = selectors.policy_set()
    proposed = _policy_set_of(entries, agents)
    report = Replay()
    old_counts, new_counts = _Counts(), _Counts()
    budget_refusals: dict[int, str] = {}
    since = timezone.now() - timedelta(days=days)
    for record in _records(since):
        agent = agents.get(record.agent_id)
        if agent is None:
            continue
        if record.params is None:
            report.skipped += 1
            continue
        report.replayed += 1
        if agent.pk not in budget_refusals:
            budget_refusals[agent.pk] = admission.refusal(agent, None)
        facts = rules.Facts(
            action=record.action,
            params=record.params,
            estimated_cost_cents=record.estimated_cost_cents,
            confidence=record.confidence,
            agent_status=AgentStatus.ACTIVE,
            budget_refusal=budget_refusals[agent.pk],
            unknown_actions=settings.OVERSIGHT_UNKNOWN_ACTIONS,
        )
        old = old_counts.answer(today.policy_for(agent, record.action), facts, agent, record)
        new = new_counts.answer(proposed.policy_for(agent, record.action), facts, agent, record)
        if old.decision != new.decision:
            codes = ", ".join(new.codes)
            report.changed[(agent.name, record.action, old.decision, new.decision, codes)] += 1
    return report


def _records(since: datetime) -> Iterator[CheckRecord]:
    return CheckRecord.objects.filter(checked_at__gte=since).order_by("checked_at", "id").iterator()


class _Counts:
    """The hourly counts of one side of a replay, kept as `guardrails.counters` keeps them."""

    def __init__(self) -> None:
        self.used: Counter[tuple[int, str, int]] = Counter()
        self.held: dict[tuple[int, str], datetime] = {}

    def answer(
        self,
        policy: rules.CompiledPolicy | None,
        facts: rules.Facts,
        agent: Agent,
        record: CheckRecord,
    ) -> rules.Verdict:
        verdict = rules.evaluate(policy, facts)
        if policy is None or policy.rate_limit_per_hour is None:
            return verdict
        limit = policy.rate_limit_per_hour
        key = (agent.pk, policy.name, int(record.checked_at.timestamp() // 3600))
        slot = (agent.pk, params_sha256(facts.action, dict(facts.params)))
        held_at = self.held.pop(slot, None) if record.purpose == CheckPurpose.CREATE else None
        if verdict.decision == rules.DENY:
            admitted = self.used[key] < limit  # a denied call only looks (`peek`)
        elif held_at is not None and record.checked_at - held_at <= HOLD:
            admitted = True  # its check counted it
        elif self.used[key] < limit:
            admitted = True
            self.used[key] += 1
            if record.purpose == CheckPurpose.CHECK and verdict.decision != rules.ALLOW:
                self.held[slot] = record.checked_at
        else:
            admitted = False
        return verdict.with_rate(
            rules.RateOutcome(limit=limit, used=self.used[key], admitted=admitted)
        )


def _policy_set_of(entries: list[policyfile.Entry], agents: dict[int, Agent]) -> Any:
    ids = {agent.name: pk for pk, agent in agents.items()}
    return selectors.index(
        (
            selectors.compile_fields(entry.fields),
            entry.fields["team"],
            ids.get(entry.fields["agent"]),
        )
        for entry in entries
        if entry.fields["enabled"]
    )
