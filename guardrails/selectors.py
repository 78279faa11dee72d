"""Reads: the policy set the check uses (kept per process, see `oversight.cache`), which policy
applies to an agent, and the violations page's list."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from agents.models import Agent
from budgets.models import Scope
from guardrails import policyfile, rules
from guardrails.models import Policy, PolicySetVersion, PolicyVersion, Violation, ViolationAlert
from oversight.cache import UNREAD, Unread, VersionedCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySet:
    """The enabled policies, compiled, indexed the way the check looks them up."""

    everyone: dict[str, rules.CompiledPolicy]
    by_team: dict[tuple[str, str], rules.CompiledPolicy]
    by_agent: dict[tuple[str, int], rules.CompiledPolicy]

    def policy_for(self, agent: Agent, action: str) -> rules.CompiledPolicy | None:
        """The agent's own policy for the action, else its team's, else the global one (names
        compared as `rules.action_key` writes them)."""
        key = rules.action_key(action)
        return (
            self.by_agent.get((key, agent.pk))
            or (self.by_team.get((key, agent.team)) if agent.team else None)
            or self.everyone.get(key)
        )

    def applicable(self, agent: Agent) -> list[rules.CompiledPolicy]:
        """Every action's policy as it applies to `agent`, by name."""
        names = {name for name, _ in self.by_agent} | {name for name, _ in self.by_team}
        names |= set(self.everyone)
        found = (self.policy_for(agent, name) for name in sorted(names))
        return [policy for policy in found if policy is not None]


def compile_fields(
    fields: dict[str, Any], *, id: int = 0, version: int = 0, version_id: int | None = None
) -> rules.CompiledPolicy:
    """The check's form of a policy given in the policy file's form."""
    return rules.compile_policy(
        id=id,
        name=fields["name"],
        scope=fields["scope"],
        version=version,
        version_id=version_id,
        category=fields["category"],
        risk_level=fields["risk_level"],
        requires_approval=fields["requires_approval"],
        forbidden_patterns=fields["forbidden_patterns"],
        allowed_resources=fields["allowed_resources"],
        max_cost_cents=fields["max_cost_cents"],
        rate_limit_per_hour=fields["rate_limit_per_hour"],
        sensitive=fields["sensitive"],
        params_schema=fields["params_schema"],
    )


def index(
    policies: Iterable[tuple[rules.CompiledPolicy, str, int | None]],
) -> PolicySet:
    """A policy set of (policy, team, agent id) triples, each placed by its scope."""
    everyone: dict[str, rules.CompiledPolicy] = {}
    by_team: dict[tuple[str, str], rules.CompiledPolicy] = {}
    by_agent: dict[tuple[str, int], rules.CompiledPolicy] = {}
    for policy, team, agent_id in policies:
        key = rules.action_key(policy.name)
        if policy.scope == Scope.AGENT and agent_id is not None:
            by_agent[(key, agent_id)] = policy
        elif policy.scope == Scope.TEAM:
            by_team[(key, team)] = policy
        elif policy.scope == Scope.GLOBAL:
            everyone[key] = policy
    return PolicySet(everyone, by_team, by_agent)


def _load() -> PolicySet:
    # One statement, so each policy and the id of its newest version are read together.
    newest = PolicyVersion.objects.filter(policy=OuterRef("pk")).order_by("-id").values("id")[:1]
    enabled = (
        Policy.objects.filter(enabled=True)
        .select_related("agent")
        .annotate(version_id=Subquery(newest))
    )
    built = []
    for policy in enabled:
        try:
            compiled = compile_fields(
                policyfile.snapshot(policy),
                id=policy.pk,
                version=policy.version,
                version_id=policy.version_id,
            )
        except Exception:
            # Saved before a stricter check existed, say: one policy that cannot be used must
            # not take every check down. Fail safe: its action counts as unknown (refused).
            logger.exception("policy %s cannot be compiled; its action counts as unknown", policy)
            continue
        built.append((compiled, policy.team, policy.agent_id))
    return index(built)


def policy_set_version() -> int:
    """Raised by every change of any policy, in the order the changes commit."""
    row = PolicySetVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return row or 0


POLICIES: VersionedCache[PolicySet] = VersionedCache(
    "policies", version=policy_set_version, load=_load
)


def policy_set(published: int | Unread | None = UNREAD) -> PolicySet:
    return POLICIES.get(published)


def policy_json(policy: rules.CompiledPolicy) -> dict[str, Any]:
    """What an agent may know of a policy that applies to it (GET /api/v1/policies)."""
    return {
        "name": policy.name,
        "version": policy.version,
        "scope": policy.scope,
        "category": policy.category,
        "risk_level": policy.risk_level,
        "requires_approval": policy.requires_approval,
        "max_cost_cents": policy.max_cost_cents,
        "rate_limit_per_hour": policy.rate_limit_per_hour,
        "allowed_resources": list(policy.allowed_resources),
        "forbidden_patterns": list(policy.forbidden_patterns),
        "sensitive": policy.sensitive,
        "params_schema": policy.params_schema,
    }


# --- violations ----------------------------------------------------------------------------


def violations(
    *,
    agent: Agent | None = None,
    action: str = "",
    code: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Violation]:
    found = Violation.objects.select_related("agent", "policy_version")
    if agent is not None:
        found = found.filter(agent=agent)
    if action:
        found = found.filter(action=action)
    if code:
        found = found.filter(code=code)
    if since is not None:
        found = found.filter(created_at__gte=since)
    if until is not None:
        found = found.filter(created_at__lt=until)
    # By id, newest first: the page pages by id (`before=`), and ids grow with time.
    return found.order_by("-id")


def recent_alerts(limit: int = 5) -> list[ViolationAlert]:
    """The latest repeated-violations alerts, newest first."""
    return list(ViolationAlert.objects.select_related("agent").order_by("-created_at")[:limit])
