"""The check's decision (SPEC §6) as pure functions over plain values: no ORM, no Redis.

`evaluate` walks the steps in the spec's order and lists every reason that applies; the answer
is `deny` when any reason denies, else `require_approval` when any asks for a person, else
`allow`, so the first step that decides, decides. The rate limit (step 4) needs Redis, so the
service counts it after `evaluate` (only a call that nothing else denies uses up a slot) and
adds its reason with `Verdict.with_rate`.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema_rs

from agents.models import AUTONOMY_NAMES
from approvals.models import RiskLevel
from guardrails import matching

DENY = "deny"
REQUIRE_APPROVAL = "require_approval"
ALLOW = "allow"

# The steps of SPEC §6, in order; reasons are listed in this order.
STEP_STATUS = 1
STEP_BUDGET = 2
STEP_UNKNOWN = 3
STEP_RATE = 4
STEP_COST = 5
STEP_PATTERN = 6
STEP_RESOURCE = 7
STEP_CONFIDENCE = 8
STEP_RECORD = 9  # circuit breaker and loop detection (agent controls)
STEP_APPROVAL = 10

# A missing confidence counts as this much where a threshold needs a number (SPEC §6).
DEFAULT_CONFIDENCE = 0.5
# More matches than this are summed up in one last reason: the answer stays small.
MAX_PATTERN_REASONS = 10

# How serious a violation decided by each code is (the seed's severities).
SEVERITY = {
    "agent_paused": RiskLevel.MEDIUM,
    "agent_disabled": RiskLevel.HIGH,
    "budget_exceeded": RiskLevel.HIGH,
    "unknown_action": RiskLevel.HIGH,
    "rate_limited": RiskLevel.HIGH,
    "cost_limit": RiskLevel.HIGH,
    "invalid_params": RiskLevel.MEDIUM,
    "forbidden_pattern": RiskLevel.CRITICAL,
    "resource_not_allowed": RiskLevel.HIGH,
    "confidence_too_low": RiskLevel.MEDIUM,
    "autonomy_manual": RiskLevel.MEDIUM,
    "loop_detected": RiskLevel.MEDIUM,
}

DEFAULT_AUTONOMY_LEVEL = 2
AUTONOMY_CODES = ("autonomy_manual", "autonomy_level")


def action_key(action: str) -> str:
    """The form an action's name is looked up in: `Deploy_To_Production` and its full-width or
    other compatibility spellings are the policy `deploy_to_production`, so changing the case
    of a name cannot make a known action unknown (and route it lower, or count it apart)."""
    return unicodedata.normalize("NFKC", action).casefold()


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    effect: str  # DENY or REQUIRE_APPROVAL (ALLOW: a standing approval's, `grants.rules`)
    step: int
    param: str = ""
    pattern: str = ""
    excerpt: str = ""

    def as_json(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message, "effect": self.effect}
        if self.param:
            body["param"] = self.param
        if self.pattern:
            body["pattern"] = self.pattern
        return body


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy as the check uses it: plain values and its compiled matchers."""

    id: int
    name: str
    scope: str
    version: int
    version_id: int | None
    category: str
    risk_level: str
    requires_approval: bool = False
    forbidden_patterns: tuple[str, ...] = ()
    allowed_resources: tuple[str, ...] = ()
    max_cost_cents: int | None = None
    rate_limit_per_hour: int | None = None
    sensitive: bool = False
    params_schema: Mapping[str, Any] | None = None
    matcher: matching.PatternSet | None = field(default=None, compare=False, repr=False)
    validator: Any = field(default=None, compare=False, repr=False)

    def as_ref(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "scope": self.scope}


def compile_policy(**fields: Any) -> CompiledPolicy:
    """Build the check's form of a policy; raises `PolicyProblem` naming what is wrong."""
    patterns = tuple(fields.pop("forbidden_patterns", None) or ())
    schema = fields.get("params_schema")
    try:
        matcher = matching.PatternSet(patterns) if patterns else None
    except matching.PatternError as exc:
        raise PolicyProblem({"forbidden_patterns": [str(exc)]}) from None
    validator = schema_validator(schema) if schema is not None else None
    return CompiledPolicy(
        forbidden_patterns=patterns,
        allowed_resources=tuple(fields.pop("allowed_resources", None) or ()),
        matcher=matcher,
        validator=validator,
        **fields,
    )


class PolicyProblem(ValueError):
    """A policy that cannot be used, with messages per field (as a form reports them)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


def schema_validator(schema: object) -> Any:
    """A validator for a policy's params schema. Its `pattern`s run on a linear-time engine and
    it fetches nothing: a `$ref` to another document is refused."""
    if not isinstance(schema, dict):
        raise PolicyProblem({"params_schema": ["A JSON Schema is a JSON object."]})
    try:
        jsonschema_rs.meta.validate(schema)
        return jsonschema_rs.validator_for(
            schema, pattern_options=jsonschema_rs.RegexOptions(), offline=True
        )
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyProblem({"params_schema": [f"Not a usable JSON Schema: {first}"]}) from None


@dataclass(frozen=True)
class Facts:
    """Everything the check decides on besides the policy and the rate count."""

    action: str
    params: Mapping[str, Any]
    estimated_cost_cents: int | None = None
    confidence: float | None = None
    claimed_risk: str | None = None  # a create's risk_level: it can raise the risk, not lower it
    agent_status: str = "active"
    budget_refusal: str = ""  # why an enforced budget refuses, if one does
    budget_ask: str = ""  # why a budget in ask mode wants a person, if one does
    autonomy_level: int = DEFAULT_AUTONOMY_LEVEL
    # Categories with a level of their own, overriding `autonomy_level` for their actions.
    autonomy_by_category: Mapping[str, int] = field(default_factory=dict)
    breaker_open: bool = False  # failures or rejections in a row opened the circuit breaker
    unknown_actions: str = DENY  # or REQUIRE_APPROVAL (at high risk): an admin setting


@dataclass(frozen=True)
class RateOutcome:
    """The hourly count of an agent's calls of an action, as Redis answered (or could not)."""

    limit: int
    used: int = 0
    admitted: bool = True
    unavailable: bool = False
    resets_in_seconds: int = 0


@dataclass(frozen=True)
class Verdict:
    decision: str
    reasons: tuple[Reason, ...]
    risk_level: str | None
    category: str | None
    policy: CompiledPolicy | None
    # Confidence below 0.3: the approval starts one tier above the route's first.
    raise_tier: bool = False
    # A create's claim set the risk: it is above what the policy (or the unknown-action
    # setting) says.
    risk_from_claim: bool = False

    @property
    def deciding(self) -> Reason | None:
        """The first reason with the decision's effect (None for an allow)."""
        return next((r for r in self.reasons if r.effect == self.decision), None)

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    @property
    def risk_source(self) -> str:
        """What set the risk: the policy, unless a claim above it did (SPEC §2)."""
        return "claim" if self.risk_from_claim else "policy"

    def with_reason(self, reason: Reason) -> Verdict:
        """The verdict with one more reason (one the counting in Redis found), in step order."""
        reasons = tuple(sorted((*self.reasons, reason), key=lambda r: r.step))
        return replace(self, reasons=reasons, decision=_decision(reasons))

    def with_trigger(self, reason: Reason) -> Verdict:
        """The verdict with a step-9 reason found in Redis (a loop): as for the breaker, a
        trigger decides before the autonomy level, whose reason goes."""
        kept = tuple(r for r in self.reasons if r.code not in AUTONOMY_CODES)
        reasons = tuple(sorted((*kept, reason), key=lambda r: r.step))
        return replace(self, reasons=reasons, decision=_decision(reasons))

    def with_rate(self, outcome: RateOutcome | None) -> Verdict:
        """The verdict with step 4's reason added, if the count gave one."""
        if outcome is None:
            return self
        if outcome.unavailable:
            reason = Reason(
                "rate_limit_unavailable",
                "The hourly rate limit cannot be counted right now (Redis does not answer): "
                "a person decides instead.",
                REQUIRE_APPROVAL,
                STEP_RATE,
            )
        elif not outcome.admitted:
            minutes = max(1, -(-outcome.resets_in_seconds // 60))
            name = self.policy.name if self.policy else "this action"
            message = (
                f"{outcome.limit} calls of {name} per hour are used up; the count starts again "
                f"in {minutes} min."
                if outcome.limit
                else f"The policy for {name} allows no calls (its hourly limit is 0)."
            )
            reason = Reason("rate_limited", message, DENY, STEP_RATE)
        else:
            return self
        return self.with_reason(reason)


def _decision(reasons: tuple[Reason, ...]) -> str:
    effects = {reason.effect for reason in reasons}
    if DENY in effects:
        return DENY
    return REQUIRE_APPROVAL if REQUIRE_APPROVAL in effects else ALLOW


def evaluate(policy: CompiledPolicy | None, facts: Facts) -> Verdict:
    """Every reason of SPEC §6's steps but the rate limit, and the decision they make."""
    reasons: list[Reason] = []
    add = reasons.append

    # 1. agent status
    if facts.agent_status != "active":
        code = "agent_paused" if facts.agent_status == "paused" else "agent_disabled"
        add(Reason(code, f"The agent is {facts.agent_status}.", DENY, STEP_STATUS))
    # 2. budget
    if facts.budget_refusal:
        add(Reason("budget_exceeded", facts.budget_refusal, DENY, STEP_BUDGET))
    elif facts.budget_ask:
        add(budget_reason(facts.budget_ask))
    # 3. unknown action
    risk: str | None
    if policy is None:
        if facts.unknown_actions == REQUIRE_APPROVAL:
            risk = RiskLevel.HIGH
            message = f"No policy covers {facts.action!r}: a person decides, at high risk."
            add(Reason("unknown_action", message, REQUIRE_APPROVAL, STEP_UNKNOWN))
        else:
            risk = None
            message = f"No policy covers {facts.action!r}; unknown actions are refused."
            add(Reason("unknown_action", message, DENY, STEP_UNKNOWN))
    else:
        risk = policy.risk_level
        _policy_steps(policy, facts, add)
    from_claim = False
    if risk is not None and facts.claimed_risk:
        from_claim = RiskLevel.rank(facts.claimed_risk) > RiskLevel.rank(risk)
        risk = RiskLevel.highest(risk, facts.claimed_risk)

    # 8. confidence (the seed's escalation triggers)
    raise_tier = False
    confidence = facts.confidence
    if confidence is not None:
        if confidence < 0.1:
            add(Reason("confidence_too_low", _confidence(confidence, 0.1, "refused"), DENY, 8))
        elif confidence < 0.3:
            raise_tier = True
            text = _confidence(confidence, 0.3, "a person one tier higher must approve")
            add(Reason("confidence_very_low", text, REQUIRE_APPROVAL, STEP_CONFIDENCE))
        elif confidence < 0.5:
            text = _confidence(confidence, 0.5, "a person must approve")
            add(Reason("confidence_low", text, REQUIRE_APPROVAL, STEP_CONFIDENCE))

    # 9. the circuit breaker (loop detection needs Redis: the service adds its reason)
    if facts.breaker_open:
        message = (
            "The agent's last outcomes were failures or rejections, several in a row (the "
            "circuit breaker is open): a person decides until one succeeds."
        )
        add(Reason("consecutive_failures", message, REQUIRE_APPROVAL, STEP_RECORD))

    # 10. the policy's flag, critical risk, else the agent's autonomy
    if policy is not None and policy.requires_approval:
        message = f"The policy for {policy.name} requires a person's approval."
        add(Reason("policy_requires_approval", message, REQUIRE_APPROVAL, STEP_APPROVAL))
    if risk == RiskLevel.CRITICAL:
        message = "Critical actions always need people's approval (two of them)."
        add(Reason("critical_risk", message, REQUIRE_APPROVAL, STEP_APPROVAL))
    if risk is not None and not any(r.effect == REQUIRE_APPROVAL for r in reasons):
        level = facts.autonomy_level
        if policy is not None and policy.category in facts.autonomy_by_category:
            level = int(facts.autonomy_by_category[policy.category])
        autonomy = _autonomy(level, risk, confidence)
        if autonomy is not None:
            add(autonomy)

    final = tuple(reasons)
    return Verdict(
        decision=_decision(final),
        reasons=final,
        risk_level=risk,
        category=policy.category if policy else None,
        policy=policy,
        raise_tier=raise_tier,
        risk_from_claim=from_claim,
    )


def _policy_steps(policy: CompiledPolicy, facts: Facts, add: Any) -> None:
    """Steps 5 to 7: cost, the params schema, forbidden patterns, allowed resources."""
    cost = facts.estimated_cost_cents
    if policy.max_cost_cents is not None and cost is not None and cost > policy.max_cost_cents:
        message = (
            f"The estimated cost, {cost}¢, is above the {policy.max_cost_cents}¢ "
            f"a call of {policy.name} may cost."
        )
        add(Reason("cost_limit", message, DENY, STEP_COST))
    if policy.validator is not None:
        try:
            # validate() stops at the first error; iter_errors() builds all of them first.
            policy.validator.validate(dict(facts.params))
        except jsonschema_rs.ValidationError as error:
            where = matching.place(error.instance_path)
            message = _schema_message(where, error, policy.params_schema)
            add(Reason("invalid_params", message, DENY, STEP_COST, where))
    if policy.matcher is not None:
        _patterns(policy.matcher, facts.params, add)
    if policy.allowed_resources:
        for key in matching.RESOURCE_KEYS:
            if key not in facts.params:
                continue
            value = facts.params[key]
            if isinstance(value, str) and matching.resource_in(value, policy.allowed_resources):
                continue
            shown = matching.excerpt(value) if isinstance(value, str) else type(value).__name__
            message = (
                f"{key} is outside what {policy.name} may touch "
                f"({', '.join(policy.allowed_resources)})."
            )
            add(Reason("resource_not_allowed", message, DENY, STEP_RESOURCE, key, "", shown))


def _schema_message(where: str, error: Any, schema: Any) -> str:
    """The first schema error: where, and the schema's rule it breaks, never the value itself
    (jsonschema's own message quotes it, and it may be a secret)."""
    path = list(error.schema_path)
    if path and path[-1] == "required":
        missing = getattr(error.kind, "property", None)  # a name from the schema, not a value
        return f'{where}: "{missing}" is required.' if missing else f"{where}: incomplete."
    rule: Any = schema
    for part in path:
        rule = rule[part] if isinstance(rule, dict | list) else None
    shown = json.dumps(rule, ensure_ascii=False)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    keyword = str(path[-1]) if path else "schema"
    return f"{where}: must satisfy the arguments schema's {keyword} {shown}."


def _patterns(matcher: matching.PatternSet, params: Mapping[str, Any], add: Any) -> None:
    """Step 6. The patterns scan all the strings at once; only on a hit are the matching ones
    found (by halving, `matching.locate`) and named (see `guardrails.matching`). A string
    matching as written and as resolved counts once; a list's joined text (a command line split
    into argv) counts only when none of its strings matches on its own."""
    found = matching.texts(params)
    if not matcher.matching(found.joined()):
        return
    hits = matching.locate(matcher, found, 4 * (MAX_PATTERN_REASONS + 1))
    by_origin: dict[int, list[str]] = {}
    for index in hits:
        patterns = by_origin.setdefault(found.origin[index], [])
        patterns += [p for p in matcher.matching(found.texts[index]) if p not in patterns]
    for start, count in found.lists.items():
        if start in by_origin and any(start < other <= start + count for other in by_origin):
            del by_origin[start]
    origins = sorted(by_origin)[: MAX_PATTERN_REASONS + 1]
    places = matching.names(params, set(origins))
    shown = 0
    for origin in origins:
        for pattern in by_origin[origin]:
            shown += 1
            if shown <= MAX_PATTERN_REASONS:
                where = places[origin]
                message = f"{where} matches the forbidden pattern {pattern}"
                text = matching.excerpt(found.texts[origin])
                add(Reason("forbidden_pattern", message, DENY, STEP_PATTERN, where, pattern, text))
    if shown > MAX_PATTERN_REASONS or len(by_origin) > len(origins):
        add(Reason("forbidden_pattern", "… and more matches.", DENY, STEP_PATTERN))


def _confidence(confidence: float, threshold: float, outcome: str) -> str:
    return f"The agent's confidence, {confidence:g}, is below {threshold:g}: {outcome}."


def autonomy_allows(level: int, risk: str, confidence: float | None) -> bool:
    """The autonomy table of SPEC §6: may an agent at `level` act alone at `risk`?"""
    sure = DEFAULT_CONFIDENCE if confidence is None else confidence
    if level <= 1:
        return False
    if risk == RiskLevel.LOW:
        return True
    if risk == RiskLevel.MEDIUM:
        return (level == 3 and sure >= 0.7) or (level == 4 and sure >= 0.85) or level >= 5
    if risk == RiskLevel.HIGH:
        return level >= 5 and sure >= 0.95
    return False


def budget_reason(why: str) -> Reason:
    """Step 2 for a budget in ask mode (SPEC §5): past its limit, a person decides."""
    message = (
        f"{why} The budget asks a person instead of refusing: approving the request raises "
        "this period's cap by its estimate."
    )
    return Reason("budget_exceeded", message, REQUIRE_APPROVAL, STEP_BUDGET)


def loop_reason() -> Reason:
    """Step 9's loop detection, found in Redis (`guardrails.counters`)."""
    message = (
        "The agent has asked for this same call three times in a row, or alternates between "
        "two calls, within 10 minutes and without a success: a person decides."
    )
    return Reason("loop_detected", message, REQUIRE_APPROVAL, STEP_RECORD)


def _autonomy(level: int, risk: str, confidence: float | None) -> Reason | None:
    name = AUTONOMY_NAMES.get(level, str(level))
    if level <= 0:
        message = "The agent is at autonomy level 0 (manual): it may not act on its own."
        return Reason("autonomy_manual", message, DENY, STEP_APPROVAL)
    if autonomy_allows(level, risk, confidence):
        return None
    message = (
        f"At autonomy level {level} ({name}) the agent may not take a {risk}-risk action "
        "alone: a person decides."
    )
    return Reason("autonomy_level", message, REQUIRE_APPROVAL, STEP_APPROVAL)
