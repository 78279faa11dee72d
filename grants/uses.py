"""The check's side of grants (`guardrails.services.check_action`): find the grants that could
answer a call in place of a person, use one (counted atomically), void those whose policy has
changed since.

Apart from `grants.services` because the check imports this module, and `grants.services`
imports the approval services, which import the check.

Only a check that would otherwise answer require_approval, for reasons a grant may waive
(`grants.rules.WAIVABLE`), reads the grants at all: an allow or a deny costs nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents.models import Agent
from approvals import rules as approval_rules
from audit.events import EventType
from audit.services import record_event
from grants import rules
from grants.models import Grant
from guardrails.rules import Verdict, action_key

# More live grants than this for one agent's action are not looked at (the oldest-ending first).
MAX_CANDIDATES = 20


class Standing:
    """The grants that could stand in for a person on one call: read at most once, and only when
    a verdict asks for a person for reasons a grant may waive."""

    def __init__(self, agent: Agent, action: str, params: Mapping[str, Any], digest: str) -> None:
        """`digest`: the hash of the looked-up action and the arguments (as a grant keeps it)."""
        self.agent = agent
        self.action = action_key(action)
        self.params = params
        self.digest = digest
        self._rows: list[Grant] | None = None

    def offered(self, verdict: Verdict) -> list[Grant]:
        """The live grants that cover this call under `verdict` (exact ones first), before
        their policy version is compared: the verdict may come from a policy set that the
        check's round trip has yet to confirm."""
        if not rules.waivable(verdict):
            return []
        if self._rows is None:
            live = Grant.objects.live().filter(
                agent=self.agent, action=self.action, granted_by__is_active=True
            )
            ordered = live.select_related("granted_by", "agent").order_by(
                "kind", "expires_at", "pk"
            )
            self._rows = list(ordered[:MAX_CANDIDATES])
        return [
            grant
            for grant in self._rows
            if rules.covers(
                grant,
                action=self.action,
                params=self.params,
                digest=self.digest,
                risk_level=verdict.risk_level,
            )
        ]

    def use(self, verdict: Verdict) -> Grant | None:
        """Use the first grant that covers the call under `verdict`, the final one (its
        policies confirmed current), and return it; None when none may. A grant made under
        another version of the policy is voided on the way."""
        for grant in self.offered(verdict):
            if not _same_policy(grant, verdict):
                _void(grant, verdict)
            elif _granter_may_decide(grant) and _consume(grant, self.agent, self.digest, verdict):
                return grant
        return None

    def would_use(self, verdict: Verdict) -> Grant | None:
        """The grant `use` would use, using and voiding nothing (the simulator)."""
        for grant in self.offered(verdict):
            if _same_policy(grant, verdict) and _granter_may_decide(grant):
                return grant
        return None


def answer(verdict: Verdict, grant: Grant, *, simulated: bool = False) -> Verdict:
    """The verdict as `grant` answers it."""
    return rules.allowed(
        verdict,
        grant_id=grant.pk,
        granted_by=grant.granted_by.display_name,
        uses_left=grant.uses_left,
        expires_at=grant.expires_at,
        simulated=simulated,
    )


def _same_policy(grant: Grant, verdict: Verdict) -> bool:
    return verdict.policy is not None and verdict.policy.version_id == grant.policy_version_id


def _granter_may_decide(grant: Grant) -> bool:
    """A grant is never wider than what its granter may decide now: an active approver whose
    tier covers the first tier of its risk's route (roles, tier and routes may have changed),
    who does not hold the agent now (its owner, or the creator of one of its keys: SPEC §2's
    separation of duties), unless self-approval is allowed for it now."""
    route = approval_rules.route_for(grant.risk_level)
    if not grant.granted_by.covers(route[0]):
        return False
    agent = grant.agent
    if approval_rules.self_approval_allowed(agent):
        return True
    return grant.granted_by_id not in approval_rules.agent_holder_ids(agent)


@transaction.atomic
def _consume(grant: Grant, agent: Agent, digest: str, verdict: Verdict) -> bool:
    """Count one use, if the grant is still live: one conditional UPDATE, so of simultaneous
    checks on a grant with n uses left exactly n get one (the row lock makes the others wait,
    then re-read the count). Audited as `grant.used`."""
    now = timezone.now()
    counted = (
        Grant.objects.live(now).filter(pk=grant.pk).update(uses=F("uses") + 1, last_used_at=now)
    )
    if not counted:
        return False
    grant.uses = Grant.objects.values_list("uses", flat=True).get(pk=grant.pk)  # locked: ours
    grant.last_used_at = now
    policy = verdict.policy
    record_event(
        event_type=EventType.GRANT_USED,
        actor=agent,
        subject=grant,
        payload={
            "action": grant.action,
            "params_sha256": digest,
            "use": grant.uses,
            "max_uses": grant.max_uses,
            "policy": policy.name if policy else None,
            "version": policy.version if policy else None,
            "request_id": str(grant.made_from_id),
        },
    )
    return True


@transaction.atomic
def _void(grant: Grant, verdict: Verdict) -> None:
    """The policy changed since the grant was made: it is void, for good (audited once)."""
    voided = Grant.objects.filter(pk=grant.pk, voided_at__isnull=True).update(
        voided_at=timezone.now()
    )
    if not voided:
        return
    policy = verdict.policy
    record_event(
        event_type=EventType.GRANT_VOIDED,
        subject=grant,
        payload={
            "action": grant.action,
            "reason": "policy_changed",
            "made_under_version_id": grant.policy_version_id,
            "policy": policy.name if policy else None,
            "version": policy.version if policy else None,
        },
    )
