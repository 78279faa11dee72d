"""Checking an action, and recording what a check leaves behind.

`check_action` is the one check (SPEC §6): the API's `guardrails/check`, the check inside every
approval request's create, and the simulator (`simulate`, which records nothing) all call it.
It reads the agent's budgets (only when some apply), evaluates the policy in process
(`guardrails.rules`), and makes one Redis round trip (`guardrails.counters`) for the rate limit,
the policy set's freshness and the check log. An allowed call writes nothing to the database;
a denied one records a violation and its audit event, and may alert the managers. A call that
needs a person only for reasons a standing approval may waive looks for one (`grants.uses`):
one that covers it answers allow in the person's place, its use counted and audited.

Policy changes are `guardrails.policies`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from agents.keyring import KEYRING
from agents.models import Agent, AgentStatus
from approvals import live
from approvals.binding import params_sha256
from audit.events import EventType
from audit.services import record_event
from budgets import admission
from grants import uses as grants
from guardrails import counters, rules, selectors
from guardrails.models import (
    CheckPurpose,
    Violation,
    ViolationAlert,
    ViolationAlertEmail,
)
from oversight import instruments
from oversight.fields import params_problem
from oversight.redis_clients import UNAVAILABLE
from oversight.throttling import Throttled, call_window

logger = logging.getLogger(__name__)

# Arguments larger than this (as JSON) are not logged: those checks cannot be replayed.
MAX_LOGGED_PARAMS = 4 * 1024
HOLD = timedelta(seconds=counters.HOLD_SECONDS)


# How often a check reloads policies that changed under it before it gives up counting.
STALE_RETRIES = 3


class UnsettledPolicies(Exception):
    """The policy set changed under a check every time it tried to count."""


class StaleKey(Exception):
    """The caller's copy of its API key is older than the newest change of agents and keys
    (or Redis could not say): authenticate from the database and check again. Nothing was
    counted or recorded."""


class InvalidParams(ValueError):
    """Arguments no check takes (too large, too deep, not plain JSON): the API's 422."""


@dataclass(frozen=True)
class CheckOutcome:
    verdict: rules.Verdict
    params_sha256: str
    violation_id: int | None = None
    rate: rules.RateOutcome | None = None
    grant_id: int | None = None  # the standing approval that allowed the call

    @property
    def decision(self) -> str:
        return self.verdict.decision

    @property
    def decision_label(self) -> str:
        return self.verdict.decision.replace("_", " ")

    @property
    def denied(self) -> bool:
        return self.verdict.decision == rules.DENY

    def as_json(self) -> dict[str, Any]:
        """The check's answer (SPEC §3)."""
        verdict = self.verdict
        return {
            "decision": verdict.decision,
            "risk_level": verdict.risk_level,
            "category": verdict.category,
            "policy": verdict.policy.as_ref() if verdict.policy else None,
            "reasons": [reason.as_json() for reason in verdict.reasons],
            "violation_id": self.violation_id,
            "params_sha256": self.params_sha256,
            "grant_id": self.grant_id,
        }


def check_action(
    *,
    agent: Agent,
    action: str,
    params: dict[str, Any],
    estimated_cost_cents: int | None = None,
    confidence: float | None = None,
    claimed_risk: str | None = None,
    purpose: str = CheckPurpose.CHECK,
    count_api_call: bool = False,
    key_copy: int | None = None,
) -> CheckOutcome:
    """Check an action of `agent` against its policy (SPEC §6) and record what it leaves.

    With `count_api_call` the call also counts against the agent's API rate limit (in the same
    Redis round trip) and `Throttled` is raised past it. `claimed_risk` is a create's claim: the
    answer's risk is the higher of it and the policy's. Raises `InvalidParams` for arguments no
    check takes (more than 64 KB, ...).

    `key_copy` is the keyring version of this process's copy of the caller's key, when the
    agent came from one (`agents.keyring`): the Redis round trip verifies it first, and
    `StaleKey` is raised, before anything is counted, when the copy is out of date.

    A check (not a create: there the agent asks a person on purpose) that needs a person only
    for reasons a standing approval may waive is answered by one that covers it, if any
    (`grants.uses`): allow, with its reason `standing_approval` and the grant's id.
    """
    problem = params_problem(params)
    if problem:
        raise InvalidParams(problem)
    digest = params_sha256(action, params)
    budgets = admission.assess(agent, estimated_cost_cents, digest)
    facts = _facts(agent, action, params, estimated_cost_cents, confidence, claimed_risk, budgets)
    held = selectors.POLICIES.peek()
    policies = held[1] if held is not None else selectors.policy_set()
    holding = held[0] if held is not None else selectors.POLICIES.held_version()
    verdict = rules.evaluate(policies.policy_for(agent, action), facts)
    standing = (
        grants.Standing(agent, action, params, _loop_digest(facts, digest))
        if purpose == CheckPurpose.CHECK
        else None
    )
    window = call_window(agent.pk) if count_api_call else None
    looped = 0
    try:
        for _ in range(STALE_RETRIES):
            answer = _count(
                agent,
                digest,
                verdict,
                facts,
                purpose,
                window,
                holding,
                budgets,
                log=True,
                key_copy=key_copy,
                # A call a grant may allow counts as an allowed one (no slot held for a request).
                allowing=standing is not None and bool(standing.offered(verdict)),
            )
            if answer.stale_key:
                KEYRING.outdated(answer.keyring)
                raise StaleKey
            key_copy = None  # verified: a second round trip need not again
            if answer.throttled:
                raise Throttled(window.retry_after if window else 1)
            if not answer.stale:
                break
            # Another process changed the policies: reload, decide again, count then (the API
            # call was counted the first time round).
            policies = selectors.policy_set(answer.published)
            verdict = rules.evaluate(policies.policy_for(agent, action), facts)
            holding = selectors.POLICIES.held_version()
            window = None
        else:
            raise UnsettledPolicies
        rate = _rate(verdict, answer)
        if answer.over_budget is not None:
            verdict = verdict.with_reason(_held_budget(answer.over_budget, estimated_cost_cents))
        if answer.loop:
            verdict = verdict.with_trigger(rules.loop_reason())
            looped = answer.loop
    except (*UNAVAILABLE, UnsettledPolicies):
        if key_copy is not None:
            raise StaleKey from None  # nothing could verify the copy of the key
        # Redis does not answer (or the policies kept changing under this check): policies as
        # of the database's version, and the rate limit fails safe: a person decides. The check
        # log misses this one.
        policies = selectors.POLICIES.from_database()
        verdict = rules.evaluate(policies.policy_for(agent, action), facts)
        rate = _unavailable(verdict)
    verdict = verdict.with_rate(rate)
    outcome = CheckOutcome(verdict, digest, rate=rate)
    if verdict.decision == rules.DENY:
        violation = _record_violation(agent, verdict, facts, digest, purpose)
        return CheckOutcome(verdict, digest, violation.pk, rate)
    if looped == 1:  # a loop needs a person, and is a violation too (SPEC §6)
        looping = next(r for r in verdict.reasons if r.code == "loop_detected")
        violation = _record_violation(agent, verdict, facts, digest, purpose, looping)
        return CheckOutcome(verdict, digest, violation.pk, rate)
    if standing is not None and verdict.decision == rules.REQUIRE_APPROVAL:
        grant = standing.use(verdict)
        if grant is not None:
            verdict = grants.answer(verdict, grant)
            outcome = CheckOutcome(verdict, digest, rate=rate, grant_id=grant.pk)
    if (
        verdict.decision == rules.ALLOW
        and verdict.policy
        and verdict.policy.sensitive
        and purpose == CheckPurpose.CHECK
    ):
        # An approval request is not an access yet: its approval is (`record_access`).
        record_access(agent=agent, policy=verdict.policy.as_ref(), params_sha256=digest)
    return outcome


def simulate(
    *,
    agent: Agent | None,
    action: str,
    params: dict[str, Any],
    estimated_cost_cents: int | None = None,
    confidence: float | None = None,
) -> CheckOutcome:
    """What `check_action` would answer now, and why, recording nothing and using up no rate
    limit (the simulator page, `policies test`). Without an agent: an active one with no team,
    no budget and no policy of its own. A standing approval that would answer is named, and
    neither used nor voided."""
    subject = agent or Agent(name="any-agent", status=AgentStatus.ACTIVE)
    problem = params_problem(params)
    if problem:
        raise InvalidParams(problem)
    digest = params_sha256(action, params)
    budgets = admission.assess(subject, estimated_cost_cents, digest)
    facts = _facts(subject, action, params, estimated_cost_cents, confidence, None, budgets)
    policies = selectors.policy_set()
    verdict = rules.evaluate(policies.policy_for(subject, action), facts)
    rate = None
    if subject.pk is not None:
        try:
            holding = selectors.POLICIES.held_version()
            answer = _count(subject, digest, verdict, facts, "", None, holding, budgets, log=False)
            if not answer.stale:
                rate = _rate(verdict, answer)
                if answer.over_budget is not None:
                    reason = _held_budget(answer.over_budget, estimated_cost_cents)
                    verdict = verdict.with_reason(reason)
        except UNAVAILABLE:
            rate = _unavailable(verdict)
    verdict = verdict.with_rate(rate)
    grant = None
    if subject.pk is not None and verdict.decision == rules.REQUIRE_APPROVAL:
        standing = grants.Standing(subject, action, params, _loop_digest(facts, digest))
        grant = standing.would_use(verdict)
        if grant is not None:
            verdict = grants.answer(verdict, grant, simulated=True)
    return CheckOutcome(verdict, digest, rate=rate, grant_id=grant.pk if grant else None)


def recheck_edit(
    *,
    agent: Agent,
    action: str,
    params: dict[str, Any],
    estimated_cost_cents: int | None,
    confidence: float | None,
    risk_level: str,
) -> rules.Verdict:
    """The policy's answer for arguments an approver edited (SPEC §2: changes are re-checked):
    the steps that read the arguments (forbidden patterns, allowed resources, the schema, the
    cost) as `check_action` applies them, with the request's risk as the claim, so the answer's
    risk is never below it. Records nothing and counts nothing: the agent's call was counted
    when it asked, its budget reserved then, and its status is the vote's own check."""
    problem = params_problem(params)
    if problem:
        raise InvalidParams(problem)
    facts = rules.Facts(
        action=action,
        params=params,
        estimated_cost_cents=estimated_cost_cents,
        confidence=confidence,
        claimed_risk=risk_level,
        unknown_actions=settings.OVERSIGHT_UNKNOWN_ACTIONS,
    )
    return rules.evaluate(selectors.policy_set().policy_for(agent, action), facts)


def _facts(
    agent: Agent,
    action: str,
    params: dict[str, Any],
    estimated_cost_cents: int | None,
    confidence: float | None,
    claimed_risk: str | None,
    budgets: admission.Assessment,
) -> rules.Facts:
    return rules.Facts(
        action=action,
        params=params,
        estimated_cost_cents=estimated_cost_cents,
        confidence=confidence,
        claimed_risk=claimed_risk,
        agent_status=agent.status,
        budget_refusal=budgets.refusal,
        budget_ask=budgets.ask,
        autonomy_level=agent.overall_autonomy,
        autonomy_by_category=agent.autonomy_by_category or {},
        breaker_open=agent.breaker_opened_at is not None,
        unknown_actions=settings.OVERSIGHT_UNKNOWN_ACTIONS,
    )


def _held_budget(room: admission.Room, estimate: int | None) -> rules.Reason:
    message = (
        f"The estimate, {estimate}¢, with what other calls of the last few minutes hold, is "
        f"more than the {room.left_cents:.2f}¢ left in the {room.label} this period."
    )
    if room.ask:
        return rules.budget_reason(message)
    return rules.Reason("budget_exceeded", message, rules.DENY, rules.STEP_BUDGET)


def _count(
    agent: Agent,
    digest: str,
    verdict: rules.Verdict,
    facts: rules.Facts,
    purpose: str,
    window: Any,
    holding: int | None,
    budgets: admission.Assessment,
    *,
    log: bool,
    key_copy: int | None = None,
    allowing: bool = False,
) -> counters.Answer:
    """The Redis round trip. Only a call nothing else denies uses up a slot (`mode`).

    `allowing`: a standing approval may allow this call that needs a person; it counts as an
    allowed call (its estimate held against the budgets). Should the grant be used up by the
    time it is asked, the request that may follow counts again: an error on the safe side."""
    if verdict.decision == rules.DENY or not purpose:
        mode = "peek"
    elif purpose == CheckPurpose.CREATE:
        mode = "create"
    elif verdict.decision == rules.REQUIRE_APPROVAL and not allowing:
        mode = "hold"  # the approval request that follows does not count again
    else:
        mode = "count"
    policy = verdict.policy
    return counters.count(
        agent_id=agent.pk,
        action=policy.name if policy else rules.action_key(facts.action),
        params_sha256=digest,
        api_call=window.counted if window else None,
        version_key=selectors.POLICIES.key,
        holding=holding,
        keyring=(KEYRING.key, key_copy) if key_copy is not None else None,
        limit=policy.rate_limit_per_hour if policy else None,  # None: no limit; 0: no call
        mode=mode,
        log=_log_entry(agent, facts, purpose) if log and settings.OVERSIGHT_CHECK_LOG else None,
        decision=verdict.decision,
        codes=verdict.codes,
        estimate=facts.estimated_cost_cents,
        rooms=budgets.rooms if not budgets.refusal else (),
        track=_loop_digest(facts, digest) if log else "",
    )


def _loop_digest(facts: rules.Facts, digest: str) -> str:
    """The call as loop detection compares it: its action as policies look names up (so that
    `Read_File` is `read_file` again), its arguments as hashed for the request."""
    key = rules.action_key(facts.action)
    return digest if key == facts.action else params_sha256(key, dict(facts.params))


def _rate(verdict: rules.Verdict, answer: counters.Answer) -> rules.RateOutcome | None:
    policy = verdict.policy
    if policy is None or policy.rate_limit_per_hour is None:
        return None
    return rules.RateOutcome(
        limit=policy.rate_limit_per_hour,
        used=answer.used,
        admitted=answer.admitted,
        resets_in_seconds=answer.resets_in_seconds,
    )


def _unavailable(verdict: rules.Verdict) -> rules.RateOutcome | None:
    policy = verdict.policy
    if policy is None or policy.rate_limit_per_hour is None:
        return None
    return rules.RateOutcome(limit=policy.rate_limit_per_hour, unavailable=True)


def _log_entry(agent: Agent, facts: rules.Facts, purpose: str) -> dict[str, Any]:
    params = json.dumps(facts.params, separators=(",", ":"), ensure_ascii=False)
    return {
        "agent": agent.pk,
        "action": facts.action,
        "params": params if len(params) <= MAX_LOGGED_PARAMS else "",
        "cost": facts.estimated_cost_cents,
        "confidence": facts.confidence,
        "purpose": purpose,
    }


# --- what a check leaves behind ------------------------------------------------------------


@transaction.atomic
def _record_violation(
    agent: Agent,
    verdict: rules.Verdict,
    facts: rules.Facts,
    digest: str,
    purpose: str,
    deciding: rules.Reason | None = None,
) -> Violation:
    deciding = deciding or verdict.deciding
    assert deciding is not None
    policy = verdict.policy
    now = timezone.now()
    violation = Violation.objects.create(
        agent=agent,
        action=facts.action,
        code=deciding.code,
        severity=rules.SEVERITY.get(deciding.code, "high"),
        message=deciding.message,
        reasons=[reason.as_json() for reason in verdict.reasons],
        param=deciding.param[:300],
        excerpt=deciding.excerpt[:100],
        pattern=deciding.pattern[:500],
        params_sha256=digest,
        policy_version_id=policy.version_id if policy else None,
        purpose=purpose,
        created_at=now,
    )
    counted = instruments.GUARDRAIL_VIOLATIONS.labels(
        code=violation.code, severity=violation.severity
    )
    transaction.on_commit(counted.inc)
    alert = _repeated_violations(agent, now)
    # The audit appends last: they hold the chain's lock until this transaction commits.
    record_event(
        event_type=EventType.GUARDRAIL_VIOLATION,
        actor=agent,
        subject=violation,
        payload={
            "action": facts.action,
            "code": deciding.code,
            "codes": verdict.codes,
            "severity": violation.severity,
            "purpose": purpose,
            "params_sha256": digest,
            "policy": policy.name if policy else None,
            "version": policy.version if policy else None,
            "param": violation.param,
            "pattern": violation.pattern,
        },
    )
    if alert is not None:
        record_event(
            event_type=EventType.GUARDRAIL_ALERT,
            subject=agent,
            payload={
                "count": alert.count,
                "window_start": alert.window_start,
                "threshold": settings.OVERSIGHT_VIOLATION_ALERT_THRESHOLD,
            },
        )
        notice = live.Notice(
            title="Repeated guardrail violations",
            message=alert.message,
            url=reverse("guardrails:violations") + f"?agent={agent.name}",
        )
        transaction.on_commit(lambda: live.announce_to_managers(notice), robust=True)
    return violation


# The clock hour of the last alert this process knows was committed, by agent id: an agent that
# goes on being refused needs no query per refusal to learn it was alerted already (a third of a
# refusal's database work; `docs/performance.md`). Alerts are never taken back.
_ALERTED: dict[int, datetime] = {}


def _repeated_violations(agent: Agent, now: datetime) -> ViolationAlert | None:
    """The alert for ≥ threshold violations by `agent` within an hour, if this violation is the
    one that reaches it this clock hour (SPEC §6: once per hour)."""
    window_start = now.replace(minute=0, second=0, microsecond=0)
    if _ALERTED.get(agent.pk) == window_start:
        return None
    if ViolationAlert.objects.filter(agent=agent, window_start=window_start).exists():
        _ALERTED[agent.pk] = window_start
        return None
    threshold = settings.OVERSIGHT_VIOLATION_ALERT_THRESHOLD
    recent = Violation.objects.filter(agent=agent, created_at__gt=now - timedelta(hours=1))
    count = recent.count()
    if count < threshold:
        return None
    alert = ViolationAlert(
        agent=agent,
        window_start=window_start,
        count=count,
        message=(
            f"Agent {agent.name} was refused {count} times by its guardrails within an hour "
            f"(the alert threshold is {threshold})."
        ),
        created_at=now,
    )
    try:
        with transaction.atomic():
            alert.save(force_insert=True)
    except IntegrityError:  # another process's violation reached it first
        return None
    ViolationAlertEmail.objects.create(alert=alert)
    transaction.on_commit(lambda: _ALERTED.__setitem__(agent.pk, window_start))
    return alert


@transaction.atomic
def record_access(
    *,
    agent: Agent,
    policy: dict[str, Any],
    params_sha256: str,
    approved_by: User | None = None,
) -> None:
    """A sensitive policy's action goes ahead (SPEC §7): a check allowed it, or a person
    approved its request. Call it last in the transaction (it appends to the audit chain)."""
    payload = {
        "action": policy["name"],
        "policy": policy["name"],
        "version": policy["version"],
        "params_sha256": params_sha256,
    }
    if approved_by is not None:
        payload["approved_by"] = approved_by.username
    record_event(event_type=EventType.DATA_ACCESSED, actor=agent, subject=agent, payload=payload)
