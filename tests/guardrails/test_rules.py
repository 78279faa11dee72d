"""The check's decision (SPEC §6) as pure functions: tables of facts and the answer they get.

Policies are built with `rules.compile_policy` directly; nothing here touches the database or
Redis. Step numbers are spelled out as the spec numbers them, not taken from the module, so a
renumbering there shows up here. The steps that read the arguments are in
test_rules_arguments.py; claims, the rate limit and building policies in
test_rules_claims.py.
"""

from __future__ import annotations

import pytest

from guardrails import rules
from guardrails.rules import ALLOW, DENY, REQUIRE_APPROVAL, Facts, RateOutcome
from tests.guardrails.rulekit import SCHEMA, facts, policy

# --- the order of the steps ----------------------------------------------------------------


def test_every_applying_reason_is_listed_in_the_order_of_the_spec_steps() -> None:
    everything = policy(
        risk_level="critical",
        requires_approval=True,
        max_cost_cents=100,
        params_schema=SCHEMA,
        forbidden_patterns=["^/etc/"],
        allowed_resources=["/app/data"],
    )
    call = facts(
        params={"path": "/etc/passwd", "limit": "all"},
        agent_status="paused",
        budget_refusal="The team's monthly budget is spent.",
        estimated_cost_cents=500,
        confidence=0.05,
    )

    verdict = rules.evaluate(everything, call).with_rate(
        RateOutcome(limit=10, used=10, admitted=False, resets_in_seconds=600)
    )

    assert verdict.codes == [
        "agent_paused",
        "budget_exceeded",
        "rate_limited",
        "cost_limit",
        "invalid_params",
        "forbidden_pattern",
        "resource_not_allowed",
        "confidence_too_low",
        "policy_requires_approval",
        "critical_risk",
    ]
    assert [reason.step for reason in verdict.reasons] == [1, 2, 4, 5, 5, 6, 7, 8, 10, 10]
    assert verdict.decision == DENY
    assert verdict.deciding is not None
    assert verdict.deciding.code == "agent_paused"


def test_an_unknown_action_is_listed_after_status_and_budget_and_before_confidence() -> None:
    call = facts(
        action="launch_rocket",
        agent_status="disabled",
        budget_refusal="Over the hard limit.",
        confidence=0.4,
    )

    verdict = rules.evaluate(None, call)

    assert verdict.codes == [
        "agent_disabled",
        "budget_exceeded",
        "unknown_action",
        "confidence_low",
    ]
    assert [reason.step for reason in verdict.reasons] == [1, 2, 3, 8]


# Each step alone: the code it gives, its effect, and the spec's step number.
SINGLE_STEPS = [
    pytest.param(policy(), facts(agent_status="paused"), "agent_paused", DENY, 1, id="paused"),
    pytest.param(
        policy(), facts(agent_status="disabled"), "agent_disabled", DENY, 1, id="disabled"
    ),
    pytest.param(policy(), facts(budget_refusal="Spent."), "budget_exceeded", DENY, 2, id="budget"),
    pytest.param(None, facts(), "unknown_action", DENY, 3, id="unknown-action"),
    pytest.param(
        policy(max_cost_cents=100),
        facts(estimated_cost_cents=101),
        "cost_limit",
        DENY,
        5,
        id="cost",
    ),
    pytest.param(
        policy(params_schema=SCHEMA),
        facts(params={"limit": "ten"}),
        "invalid_params",
        DENY,
        5,
        id="invalid-params",
    ),
    pytest.param(
        policy(forbidden_patterns=["secret"]),
        facts(params={"q": "the secret"}),
        "forbidden_pattern",
        DENY,
        6,
        id="pattern",
    ),
    pytest.param(
        policy(allowed_resources=["/app/data"]),
        facts(params={"path": "/srv/x"}),
        "resource_not_allowed",
        DENY,
        7,
        id="resource",
    ),
    pytest.param(policy(), facts(confidence=0.05), "confidence_too_low", DENY, 8, id="conf<0.1"),
    pytest.param(
        policy(), facts(confidence=0.2), "confidence_very_low", REQUIRE_APPROVAL, 8, id="conf<0.3"
    ),
    pytest.param(
        policy(), facts(confidence=0.4), "confidence_low", REQUIRE_APPROVAL, 8, id="conf<0.5"
    ),
    pytest.param(
        policy(requires_approval=True),
        facts(),
        "policy_requires_approval",
        REQUIRE_APPROVAL,
        10,
        id="policy-flag",
    ),
    pytest.param(
        policy(risk_level="critical"),
        facts(autonomy_level=5, confidence=1.0),
        "critical_risk",
        REQUIRE_APPROVAL,
        10,
        id="critical",
    ),
    pytest.param(
        policy(), facts(autonomy_level=0), "autonomy_manual", DENY, 10, id="autonomy-manual"
    ),
    pytest.param(
        policy(risk_level="medium"),
        facts(),
        "autonomy_level",
        REQUIRE_APPROVAL,
        10,
        id="autonomy-level",
    ),
]


@pytest.mark.parametrize(("given", "call", "code", "effect", "step"), SINGLE_STEPS)
def test_each_step_alone_gives_its_code_effect_and_spec_step(
    given: rules.CompiledPolicy | None, call: Facts, code: str, effect: str, step: int
) -> None:
    verdict = rules.evaluate(given, call)

    assert verdict.codes == [code]
    (reason,) = verdict.reasons
    assert (reason.effect, reason.step) == (effect, step)
    assert verdict.decision == effect
    assert verdict.deciding == reason


@pytest.mark.parametrize(
    ("given", "call", "code", "effect", "step"),
    [case for case in SINGLE_STEPS if case.values[3] == DENY],
)
def test_every_code_that_denies_has_a_severity_for_its_violation(
    given: rules.CompiledPolicy | None, call: Facts, code: str, effect: str, step: int
) -> None:
    assert rules.evaluate(given, call).codes == [code]
    assert code in rules.SEVERITY


def test_an_allowed_call_has_no_reasons_and_carries_the_policy_risk_and_category() -> None:
    given = policy(category="read", risk_level="low")

    verdict = rules.evaluate(given, facts(params={"path": "/app/data/report.csv"}))

    assert verdict.decision == ALLOW
    assert verdict.reasons == ()
    assert verdict.deciding is None
    assert (verdict.risk_level, verdict.category, verdict.policy) == ("low", "read", given)
    assert verdict.raise_tier is False
    assert verdict.risk_source == "policy"


# --- deny beats require_approval ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "call", "codes", "deciding"),
    [
        pytest.param(
            policy(requires_approval=True, forbidden_patterns=["shutdown"]),
            facts(params={"cmd": "shutdown -h now"}),
            ["forbidden_pattern", "policy_requires_approval"],
            "forbidden_pattern",
            id="pattern-and-policy-flag",
        ),
        pytest.param(
            policy(max_cost_cents=10),
            facts(estimated_cost_cents=11, confidence=0.4),
            ["cost_limit", "confidence_low"],
            "cost_limit",
            id="cost-and-low-confidence",
        ),
        pytest.param(
            None,
            facts(agent_status="paused", unknown_actions=REQUIRE_APPROVAL),
            ["agent_paused", "unknown_action"],
            "agent_paused",
            id="paused-and-unknown-at-high",
        ),
        pytest.param(
            policy(risk_level="critical", allowed_resources=["/app/data"]),
            facts(params={"path": "/app/data/../secrets"}),
            ["resource_not_allowed", "critical_risk"],
            "resource_not_allowed",
            id="resource-and-critical",
        ),
        pytest.param(
            policy(requires_approval=True),
            facts(confidence=0.01),
            ["confidence_too_low", "policy_requires_approval"],
            "confidence_too_low",
            id="too-low-confidence-and-policy-flag",
        ),
        pytest.param(
            policy(risk_level="medium", forbidden_patterns=["password"]),
            facts(params={"password": "x"}, autonomy_level=2),
            ["forbidden_pattern", "autonomy_level"],
            "forbidden_pattern",
            id="pattern-and-autonomy",
        ),
    ],
)
def test_a_deny_beats_a_require_approval_and_both_are_listed(
    given: rules.CompiledPolicy | None, call: Facts, codes: list[str], deciding: str
) -> None:
    verdict = rules.evaluate(given, call)

    assert verdict.codes == codes
    assert verdict.decision == DENY
    assert verdict.deciding is not None
    assert verdict.deciding.code == deciding


def test_the_first_require_approval_reason_decides_when_nothing_denies() -> None:
    verdict = rules.evaluate(
        policy(risk_level="critical", requires_approval=True), facts(confidence=0.2)
    )

    assert verdict.codes == ["confidence_very_low", "policy_requires_approval", "critical_risk"]
    assert verdict.decision == REQUIRE_APPROVAL
    assert verdict.deciding is not None
    assert verdict.deciding.code == "confidence_very_low"


# --- agent status and budget ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        ("paused", "agent_paused", "The agent is paused."),
        ("disabled", "agent_disabled", "The agent is disabled."),
    ],
)
def test_a_stopped_agent_is_refused_whatever_else_holds(
    status: str, code: str, message: str
) -> None:
    verdict = rules.evaluate(policy(), facts(agent_status=status, autonomy_level=5, confidence=1.0))

    assert verdict.decision == DENY
    assert verdict.codes == [code]
    assert verdict.reasons[0].message == message


def test_an_active_agent_gets_no_status_reason() -> None:
    assert rules.evaluate(policy(), facts(agent_status="active")).codes == []


def test_a_budget_refusal_denies_with_the_budgets_own_words() -> None:
    words = "The agent's daily budget of $5.00 is spent (hard limit)."

    verdict = rules.evaluate(policy(), facts(budget_refusal=words))

    assert verdict.decision == DENY
    (reason,) = verdict.reasons
    assert (reason.code, reason.message) == ("budget_exceeded", words)


# --- unknown actions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(facts(action="launch_rocket"), id="default-setting"),
        pytest.param(facts(action="launch_rocket", unknown_actions=DENY), id="deny-setting"),
    ],
)
def test_an_unknown_action_is_refused_by_default(call: Facts) -> None:
    verdict = rules.evaluate(None, call)

    assert verdict.decision == DENY
    assert verdict.codes == ["unknown_action"]
    assert "'launch_rocket'" in verdict.reasons[0].message
    assert (verdict.risk_level, verdict.category, verdict.policy) == (None, None, None)


def test_an_unknown_action_goes_to_a_person_at_high_risk_when_the_setting_says_so() -> None:
    verdict = rules.evaluate(
        None, facts(action="launch_rocket", unknown_actions=REQUIRE_APPROVAL, autonomy_level=5)
    )

    assert verdict.decision == REQUIRE_APPROVAL
    # The unknown action's reason decides; the autonomy table adds nothing to it.
    assert verdict.codes == ["unknown_action"]
    assert verdict.reasons[0].effect == REQUIRE_APPROVAL
    assert verdict.risk_level == "high"
    assert verdict.risk_source == "policy"


def test_an_unknown_action_at_high_risk_is_still_refused_below_the_confidence_floor() -> None:
    verdict = rules.evaluate(
        None, facts(action="launch_rocket", unknown_actions=REQUIRE_APPROVAL, confidence=0.05)
    )

    assert verdict.decision == DENY
    assert verdict.codes == ["unknown_action", "confidence_too_low"]


# --- cost ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_cost", "cost", "refused"),
    [
        (100, 99, False),
        (100, 100, False),
        (100, 101, True),
        (100, None, False),
        (None, 10**12, False),
        (0, 0, False),
        (0, 1, True),
    ],
)
def test_a_call_may_cost_up_to_the_policy_maximum_and_no_more(
    max_cost: int | None, cost: int | None, refused: bool
) -> None:
    verdict = rules.evaluate(
        policy(name="external_api_call", max_cost_cents=max_cost),
        facts(estimated_cost_cents=cost),
    )

    assert (verdict.codes == ["cost_limit"]) is refused
    assert verdict.decision == (DENY if refused else ALLOW)
    if refused:
        message = verdict.reasons[0].message
        assert f"{cost}¢" in message
        assert f"{max_cost}¢" in message
        assert "external_api_call" in message


# --- confidence ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "codes", "decision", "raise_tier"),
    [
        (0.0, ["confidence_too_low"], DENY, False),
        (0.099, ["confidence_too_low"], DENY, False),
        (0.1, ["confidence_very_low"], REQUIRE_APPROVAL, True),
        (0.299, ["confidence_very_low"], REQUIRE_APPROVAL, True),
        (0.3, ["confidence_low"], REQUIRE_APPROVAL, False),
        (0.499, ["confidence_low"], REQUIRE_APPROVAL, False),
        (0.5, [], ALLOW, False),
        (1.0, [], ALLOW, False),
        (None, [], ALLOW, False),
    ],
)
def test_low_confidence_triggers_refusal_or_a_person(
    confidence: float | None, codes: list[str], decision: str, raise_tier: bool
) -> None:
    verdict = rules.evaluate(policy(risk_level="low"), facts(confidence=confidence))

    assert verdict.codes == codes
    assert verdict.decision == decision
    assert verdict.raise_tier is raise_tier
    assert all(reason.step == 8 for reason in verdict.reasons)


# --- policy flag, critical risk, autonomy --------------------------------------------------


@pytest.mark.parametrize(
    ("given", "codes"),
    [
        (policy(requires_approval=True), ["policy_requires_approval"]),
        (policy(risk_level="critical"), ["critical_risk"]),
        (
            policy(risk_level="critical", requires_approval=True),
            ["policy_requires_approval", "critical_risk"],
        ),
    ],
)
def test_the_policy_flag_and_critical_risk_need_a_person_even_at_full_autonomy(
    given: rules.CompiledPolicy, codes: list[str]
) -> None:
    verdict = rules.evaluate(given, facts(autonomy_level=5, confidence=1.0))

    assert verdict.decision == REQUIRE_APPROVAL
    assert verdict.codes == codes


# The table of SPEC §6, row by row, at its thresholds.
AUTONOMY_TABLE = [
    (0, "low", 1.0, False),
    (1, "low", 1.0, False),
    (1, "low", None, False),
    (2, "low", None, True),
    (2, "low", 0.5, True),
    (2, "medium", 1.0, False),
    (2, "high", 1.0, False),
    (3, "low", None, True),
    (3, "medium", 0.7, True),
    (3, "medium", 0.69, False),
    (3, "medium", None, False),  # a missing confidence counts as 0.5
    (3, "high", 1.0, False),
    (4, "low", None, True),
    (4, "medium", 0.85, True),
    (4, "medium", 0.84, False),
    (4, "medium", None, False),
    (4, "high", 1.0, False),
    (5, "low", None, True),
    (5, "medium", None, True),
    (5, "medium", 0.5, True),
    (5, "high", 0.95, True),
    (5, "high", 0.94, False),
    (5, "high", None, False),
    (5, "critical", 1.0, False),
    (2, "critical", 1.0, False),
]


@pytest.mark.parametrize(("level", "risk", "confidence", "allowed"), AUTONOMY_TABLE)
def test_the_autonomy_table_says_who_may_act_alone(
    level: int, risk: str, confidence: float | None, allowed: bool
) -> None:
    assert rules.autonomy_allows(level, risk, confidence) is allowed


@pytest.mark.parametrize(
    ("level", "risk", "confidence", "decision", "codes"),
    [
        (0, "low", 1.0, DENY, ["autonomy_manual"]),
        (0, "medium", None, DENY, ["autonomy_manual"]),
        (1, "low", 1.0, REQUIRE_APPROVAL, ["autonomy_level"]),
        (2, "low", None, ALLOW, []),
        (2, "medium", 1.0, REQUIRE_APPROVAL, ["autonomy_level"]),
        (3, "medium", 0.7, ALLOW, []),
        (3, "medium", None, REQUIRE_APPROVAL, ["autonomy_level"]),
        (4, "medium", 0.9, ALLOW, []),
        (4, "high", 1.0, REQUIRE_APPROVAL, ["autonomy_level"]),
        (5, "high", 0.95, ALLOW, []),
        (5, "high", None, REQUIRE_APPROVAL, ["autonomy_level"]),
        (5, "critical", 1.0, REQUIRE_APPROVAL, ["critical_risk"]),
    ],
)
def test_the_agents_level_decides_where_nothing_else_did(
    level: int, risk: str, confidence: float | None, decision: str, codes: list[str]
) -> None:
    verdict = rules.evaluate(
        policy(risk_level=risk), facts(autonomy_level=level, confidence=confidence)
    )

    assert verdict.decision == decision
    assert verdict.codes == codes


@pytest.mark.parametrize(("risk", "decision"), [("low", ALLOW), ("medium", REQUIRE_APPROVAL)])
def test_an_agent_without_a_level_of_its_own_acts_at_level_two(risk: str, decision: str) -> None:
    verdict = rules.evaluate(policy(risk_level=risk), Facts(action="read_file", params={}))

    assert verdict.decision == decision


def test_the_autonomy_reason_names_the_level_and_the_risk() -> None:
    verdict = rules.evaluate(policy(risk_level="high"), facts(autonomy_level=3))

    (reason,) = verdict.reasons
    assert "level 3 (conditional)" in reason.message
    assert "high-risk" in reason.message
