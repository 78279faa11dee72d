"""The pure rules of SPEC §2: time limits, routing, who may decide. (The effective risk is the
guardrails check's: `guardrails.rules`.)

No writes here; `approvals.services` applies these under a row lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.models import Role, Tier, User
from accounts.selectors import standing_in
from agents.models import Agent, AgentStatus, ApiKey
from approvals.models import DEFAULT_ROUTES, ApprovalRequest, EscalationRoute, RiskLevel, Urgency
from oversight.cache import TimedCache


@dataclass(frozen=True)
class Deadlines:
    expires_at: datetime
    escalates_at: datetime


def deadlines(*, created_at: datetime, urgency: str, timeout_seconds: int | None) -> Deadlines:
    """Expiry after the urgency's limit (or the agent's shorter one); escalation at half-time."""
    limit = Urgency.time_limit(urgency)
    if timeout_seconds is not None:
        limit = timedelta(seconds=timeout_seconds)
    expires_at = created_at + limit
    return Deadlines(expires_at=expires_at, escalates_at=created_at + (expires_at - created_at) / 2)


# Routes change rarely (an admin edits them) and every create reads one: each process keeps
# them for a few seconds. A new route applies to requests created after that; existing requests
# keep the route they were created with either way.
ROUTE_CACHE_SECONDS = 5.0


def _load_routes() -> dict[str, list[str]]:
    rows = EscalationRoute.objects.values_list("risk_level", "tiers")
    return {level: list(tiers) for level, tiers in rows}


_routes = TimedCache(ROUTE_CACHE_SECONDS, _load_routes)


def route_for(risk_level: str) -> list[str]:
    return list(_routes.get().get(risk_level) or DEFAULT_ROUTES[risk_level])


def forget_routes() -> None:
    """Drop this process's cached routes (after a change, and in tests)."""
    _routes.forget()


def raised(route: list[str]) -> list[str]:
    """The route started one tier above its first (SPEC §6: an agent's confidence below 0.3):
    the next tier up the ranking, then the route's tiers above that. At the top it stays."""
    above = Tier.at_or_above(route[0])[1:]
    if not above:
        return list(route)
    first = above[0]
    return [first, *(tier for tier in route[1:] if Tier.rank(tier) > Tier.rank(first))]


def required_approvals(risk_level: str) -> int:
    return 2 if risk_level == RiskLevel.CRITICAL else 1


def escalation_target(route: list[str]) -> str | None:
    """The tier escalation adds: the route's next tier, else the next one up the ranking;
    None at the top of the ranking (the request stays and is flagged)."""
    if len(route) > 1:
        return route[1]
    above = Tier.at_or_above(route[0])[1:]
    return above[0] if above else None


def refusal_to_decide(user: User, request: ApprovalRequest) -> str | None:
    """Why `user` may not vote on `request`, or None when they may (SPEC §2: who may decide)."""
    if not user.has_role(Role.APPROVER):
        return "Only approvers may decide requests."
    if not user.covers(request.route[0]):
        first = Tier(request.route[0]).label.lower()
        return (
            f"This {request.risk_level}-risk request needs an approver at {first} level or above."
        )
    if not self_approval_allowed(request.agent) and is_self_approval(user, request):
        return (
            "You own this agent or created a key it could use when it asked, so you may not "
            "decide its requests."
        )
    return None


def stood_in_for(voter: User, request: ApprovalRequest, at: datetime) -> User | None:
    """The away approver `voter` decides `request` for, or None (issue 24: delegation): one
    who delegated to the voter, at the tier the request is routed to now when that is not the
    voter's own, and who could decide it themselves."""
    if request.current_tier == voter.tier:
        return None  # routed to the voter's own tier: they decide in their own right
    for delegation in standing_in(voter, at):
        principal = delegation.delegator
        if principal.tier == request.current_tier and refusal_to_decide(principal, request) is None:
            return principal
    return None


def frozen(agent: Agent) -> str | None:
    """Why nobody may vote on `agent`'s requests now, or None (SPEC §2: while an agent is
    paused its requests wait, frozen; a disabled agent's were cancelled when it stopped)."""
    if agent.status == AgentStatus.ACTIVE:
        return None
    why = f" ({agent.status_reason})" if agent.status_reason else ""
    if agent.status == AgentStatus.PAUSED:
        return f"Agent {agent.name} is paused{why}: its requests are frozen until it is resumed."
    return f"Agent {agent.name} is disabled{why}: nothing it asked for may be approved."


# --- Separation of duties (SPEC §2): nobody decides what they could have asked for ----------
#
# The agent's owner (now, and when it asked), and everyone who created one of its keys that was
# usable when the request was made (still valid, or revoked only after): a key's creator saw its
# secret and could have made the request themselves. Three doors apply the rule: the vote
# (`is_self_approval`), the inbox (`exclude_self_approvals`) and the approvers' emails
# (`holder_ids`).


def _key_usable_at(created_at: Any) -> Q:
    return Q(revoked_at__isnull=True) | Q(revoked_at__gt=created_at)


def self_approval_allowed(agent: Agent) -> bool:
    return settings.OVERSIGHT_ALLOW_SELF_APPROVAL or agent.allow_self_approval


def holder_ids(request: ApprovalRequest) -> set[int]:
    """The people who count as the owner of `request`'s agent for it."""
    creators = ApiKey.objects.filter(agent_id=request.agent_id, created_by__isnull=False).filter(
        _key_usable_at(request.created_at)
    )
    ids = set(creators.values_list("created_by", flat=True))
    ids.update(owner for owner in (request.agent.owner_id, request.owner_at_request_id) if owner)
    return ids


def agent_holder_ids(agent: Agent) -> set[int]:
    """Who holds `agent` now: its owner and the creators of its unrevoked keys."""
    creators = ApiKey.objects.filter(agent=agent, revoked_at__isnull=True).exclude(
        created_by__isnull=True
    )
    ids = set(creators.values_list("created_by", flat=True))
    if agent.owner_id is not None:
        ids.add(agent.owner_id)
    return ids


def is_self_approval(user: User, request: ApprovalRequest) -> bool:
    return user.pk in holder_ids(request)


def exclude_self_approvals(
    queryset: QuerySet[ApprovalRequest], user: User
) -> QuerySet[ApprovalRequest]:
    """`queryset` without the requests `user` may not decide as their agent's owner."""
    if settings.OVERSIGHT_ALLOW_SELF_APPROVAL:
        return queryset
    keys = ApiKey.objects.filter(agent=OuterRef("agent"), created_by=user).filter(
        _key_usable_at(OuterRef("created_at"))
    )
    held = Q(agent__owner=user) | Q(owner_at_request=user) | Exists(keys)
    return queryset.exclude(held & Q(agent__allow_self_approval=False))
