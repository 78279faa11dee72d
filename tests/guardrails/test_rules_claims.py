"""The check's answer (SPEC §6) for a claimed risk and a counted rate limit, and which policies
can be built at all. Pure functions, as in test_rules.py."""

from __future__ import annotations

from typing import Any

import pytest

from guardrails import matching, rules
from guardrails.rules import DENY, REQUIRE_APPROVAL, RateOutcome
from tests.guardrails.rulekit import facts, policy

# --- claimed risk --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy_risk", "claim", "risk", "source"),
    [
        ("low", None, "low", "policy"),
        ("low", "high", "high", "claim"),
        ("low", "medium", "medium", "claim"),
        ("medium", "medium", "medium", "policy"),
        ("high", "low", "high", "policy"),
        ("critical", "low", "critical", "policy"),
        ("high", "critical", "critical", "claim"),
    ],
)
def test_a_claimed_risk_raises_the_policys_but_never_lowers_it(
    policy_risk: str, claim: str | None, risk: str, source: str
) -> None:
    verdict = rules.evaluate(policy(risk_level=policy_risk), facts(claimed_risk=claim))

    assert verdict.risk_level == risk
    assert verdict.risk_source == source
    assert verdict.risk_from_claim is (source == "claim")


def test_a_raised_risk_is_the_one_the_autonomy_table_and_critical_rule_see() -> None:
    medium = rules.evaluate(policy(risk_level="low"), facts(claimed_risk="medium"))
    critical = rules.evaluate(
        policy(risk_level="low"), facts(claimed_risk="critical", autonomy_level=5)
    )

    assert (medium.decision, medium.codes) == (REQUIRE_APPROVAL, ["autonomy_level"])
    assert (critical.decision, critical.codes) == (REQUIRE_APPROVAL, ["critical_risk"])


def test_a_lower_claim_does_not_let_a_risky_action_through() -> None:
    verdict = rules.evaluate(
        policy(risk_level="high"), facts(claimed_risk="low", autonomy_level=2, confidence=1.0)
    )

    assert verdict.decision == REQUIRE_APPROVAL
    assert verdict.codes == ["autonomy_level"]


def test_a_claim_above_the_unknown_action_setting_raises_its_risk() -> None:
    verdict = rules.evaluate(
        None, facts(action="x", unknown_actions=REQUIRE_APPROVAL, claimed_risk="critical")
    )

    assert verdict.risk_level == "critical"
    assert verdict.risk_source == "claim"
    assert verdict.codes == ["unknown_action", "critical_risk"]


def test_a_claim_does_not_give_a_refused_unknown_action_a_risk() -> None:
    verdict = rules.evaluate(None, facts(action="x", claimed_risk="high"))

    assert verdict.risk_level is None
    assert verdict.risk_source == "policy"


# --- the rate limit (step 4) ---------------------------------------------------------------


def test_no_count_and_an_admitted_count_leave_the_verdict_as_it_was() -> None:
    verdict = rules.evaluate(policy(), facts())

    assert verdict.with_rate(None) is verdict
    assert verdict.with_rate(RateOutcome(limit=10, used=4, admitted=True)) is verdict


@pytest.mark.parametrize(
    ("resets_in", "minutes"), [(0, 1), (1, 1), (60, 1), (61, 2), (3599, 60), (3600, 60)]
)
def test_a_used_up_rate_limit_denies_saying_when_the_count_starts_again(
    resets_in: int, minutes: int
) -> None:
    verdict = rules.evaluate(policy(name="write_file"), facts()).with_rate(
        RateOutcome(limit=100, used=100, admitted=False, resets_in_seconds=resets_in)
    )

    assert verdict.decision == DENY
    (reason,) = verdict.reasons
    assert (reason.code, reason.effect, reason.step) == ("rate_limited", DENY, 4)
    assert "100 calls of write_file per hour" in reason.message
    assert reason.message.endswith(f"in {minutes} min.")


def test_a_used_up_rate_limit_turns_a_require_approval_into_a_deny() -> None:
    verdict = rules.evaluate(policy(requires_approval=True), facts()).with_rate(
        RateOutcome(limit=5, used=5, admitted=False, resets_in_seconds=30)
    )

    assert verdict.decision == DENY
    assert verdict.codes == ["rate_limited", "policy_requires_approval"]
    assert verdict.deciding is not None
    assert verdict.deciding.code == "rate_limited"


def test_a_rate_limit_that_cannot_be_counted_sends_the_call_to_a_person() -> None:
    verdict = rules.evaluate(policy(), facts()).with_rate(RateOutcome(limit=100, unavailable=True))

    assert verdict.decision == REQUIRE_APPROVAL
    (reason,) = verdict.reasons
    assert (reason.code, reason.effect, reason.step) == (
        "rate_limit_unavailable",
        REQUIRE_APPROVAL,
        4,
    )


def test_a_rate_limit_that_cannot_be_counted_does_not_soften_a_deny() -> None:
    verdict = rules.evaluate(
        policy(max_cost_cents=1), facts(agent_status="paused", estimated_cost_cents=2)
    ).with_rate(RateOutcome(limit=100, unavailable=True))

    assert verdict.decision == DENY
    assert verdict.codes == ["agent_paused", "rate_limit_unavailable", "cost_limit"]


def test_the_rate_reason_keeps_the_rest_of_the_verdict() -> None:
    before = rules.evaluate(policy(risk_level="low"), facts(confidence=0.2, claimed_risk="medium"))

    after = before.with_rate(RateOutcome(limit=1, used=1, admitted=False, resets_in_seconds=10))

    assert after.codes == ["rate_limited", "confidence_very_low"]
    assert (after.risk_level, after.risk_source, after.raise_tier) == ("medium", "claim", True)
    assert (after.category, after.policy) == (before.category, before.policy)


# --- building policies ---------------------------------------------------------------------


def test_a_policy_with_nothing_to_match_has_no_matchers() -> None:
    built = policy(forbidden_patterns=None, allowed_resources=None, params_schema=None)

    assert built.forbidden_patterns == ()
    assert built.allowed_resources == ()
    assert built.matcher is None
    assert built.validator is None


def test_a_policy_keeps_its_patterns_and_prefixes_as_tuples() -> None:
    built = policy(forbidden_patterns=["a", "b"], allowed_resources=["/x"])

    assert built.forbidden_patterns == ("a", "b")
    assert built.allowed_resources == ("/x",)
    assert built.matcher is not None
    assert built.as_ref() == {"name": "read_file", "version": 1, "scope": "global"}


@pytest.mark.parametrize("pattern", ["(?=x)", "(?<=a)b", "(?!x)", r"(a)\1", "(?>a)", "[a-"])
def test_a_policy_with_a_pattern_re2_refuses_cannot_be_built(pattern: str) -> None:
    with pytest.raises(rules.PolicyProblem) as refused:
        policy(forbidden_patterns=["fine", pattern])

    assert list(refused.value.errors) == ["forbidden_patterns"]
    (message,) = refused.value.errors["forbidden_patterns"]
    assert repr(pattern) in message
    assert "RE2" in message


def test_a_policy_whose_patterns_cannot_be_compiled_together_says_so_or_builds() -> None:
    # Each pattern passes RE2 alone; twenty of them may not fit one RE2 set. Whichever way it
    # goes, the only failure compile_policy may raise is a PolicyProblem (the loader and the
    # forms catch that one and nothing else).
    patterns = ["password", *(rf"\w{{1,1000}}{i}" for i in range(20))]

    if matching.pattern_problems(patterns):
        with pytest.raises(rules.PolicyProblem):
            policy(forbidden_patterns=patterns)
    else:
        verdict = rules.evaluate(
            policy(forbidden_patterns=patterns), facts(params={"q": "my password"})
        )
        assert verdict.codes == ["forbidden_pattern"]


def test_a_policy_with_an_empty_pattern_cannot_be_built() -> None:
    with pytest.raises(rules.PolicyProblem) as refused:
        policy(forbidden_patterns=[""])

    assert refused.value.errors == {
        "forbidden_patterns": ["An empty pattern would match everything."]
    }


@pytest.mark.parametrize("schema", [[], "object", True, 3, {"type": "object"}.items()])
def test_a_params_schema_that_is_not_an_object_is_refused(schema: object) -> None:
    with pytest.raises(rules.PolicyProblem) as refused:
        rules.schema_validator(schema)

    assert refused.value.errors == {"params_schema": ["A JSON Schema is a JSON object."]}
    assert str(refused.value) == "params_schema: A JSON Schema is a JSON object."
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": 5}, id="bad-type"),
        pytest.param({"type": "object", "required": "path"}, id="required-not-a-list"),
        pytest.param({"$ref": "https://example.com/schema.json"}, id="remote-ref"),
        pytest.param({"type": "string", "pattern": "(?=a)"}, id="lookahead-pattern"),
        pytest.param({"type": "string", "pattern": r"(a)\1"}, id="backreference-pattern"),
    ],
)
def test_a_params_schema_that_cannot_be_used_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(rules.PolicyProblem) as refused:
        policy(params_schema=schema)

    (message,) = refused.value.errors["params_schema"]
    assert message.startswith("Not a usable JSON Schema: ")
    assert "\n" not in message


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "object"},
        {"type": "object", "properties": {"q": {"type": "string", "pattern": "^(a+)+$"}}},
        {"$defs": {"p": {"type": "string"}}, "properties": {"path": {"$ref": "#/$defs/p"}}},
    ],
)
def test_a_usable_params_schema_is_accepted(schema: dict[str, Any]) -> None:
    assert rules.schema_validator(schema) is not None
