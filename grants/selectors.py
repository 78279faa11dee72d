"""Reads: the grants a person may see (the grants page), an agent's (its page), one grant."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404

from accounts.models import Role, User
from agents.models import Agent
from grants.models import Grant, GrantQuerySet
from guardrails import selectors as guardrail_selectors

# The grants page lists at most this many (live grants are few: each expires within 7 days).
PAGE_LIMIT = 200


@dataclass(frozen=True)
class Row:
    grant: Grant
    # The policy changed since the grant was made: the next check that finds it voids it.
    policy_changed: bool


def sees_all(user: User) -> bool:
    return user.has_role(Role.MANAGER) or user.has_role(Role.ADMIN)


def visible_to(user: User) -> GrantQuerySet:
    """Managers and admins see every grant; an approver the grants they made."""
    found = Grant.objects.select_related("agent", "granted_by", "policy_version")
    return found if sees_all(user) else found.filter(granted_by=user)


def grant_for(user: User, grant_id: int) -> Grant:
    """One grant `user` may see, else 404 (whether it exists is none of their business)."""
    try:
        return visible_to(user).get(pk=grant_id)
    except Grant.DoesNotExist:
        raise Http404("No such grant.") from None


def rows(grants: GrantQuerySet) -> list[Row]:
    """The live grants among `grants`, soonest to end first, each with whether its policy has
    changed since (compared with the policy set the check uses)."""
    policies = guardrail_selectors.policy_set()
    live = list(grants.live().order_by("expires_at", "pk")[:PAGE_LIMIT])
    return [Row(grant, _policy_changed(policies, grant.agent, grant)) for grant in live]


def for_agent(agent: Agent) -> list[Row]:
    """An agent's live grants (its page)."""
    found = Grant.objects.filter(agent=agent).select_related(
        "agent", "granted_by", "policy_version"
    )
    return rows(found)


def _policy_changed(policies: guardrail_selectors.PolicySet, agent: Agent, grant: Grant) -> bool:
    current = policies.policy_for(agent, grant.action)
    return current is None or current.version_id != grant.policy_version_id
