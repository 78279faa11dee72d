"""The check's decision (SPEC §6) as pure functions: tables of facts and the answer they get.

Policies are built with `rules.compile_policy` directly; nothing here touches the database or
Redis. Step numbers are spelled out as the spec numbers them, not taken from the module, so a
renumbering there shows up here.
"""

from __future__ import annotations

from typing import Any

import pytest

from guardrails import matching, rules
from guardrails.rules import ALLOW, DENY, REQUIRE_APPROVAL, Facts, RateOutcome


def policy(**fields: Any) -> rules.CompiledPolicy:
    """A low-risk read policy with nothing else set, changed by `fields`."""
    base: dict[str, Any] = {
        "id": 1,
        "name": "read_file",
        "scope": "global",
        "version": 1,
        "version_id": None,
        "category": "read",
        "risk_level": "low",
    }
    return rules.compile_policy(**{**base, **fields})


def facts(**fields: Any) -> Facts:
    """A call of read_file with no arguments by an active agent at the default level."""
    base: dict[str, Any] = {"action": "read_file", "params": {}}
    return Facts(**{**base, **fields})


def reasons_of(verdict: rules.Verdict, code: str) -> list[rules.Reason]:
    return [reason for reason in verdict.reasons if reason.code == code]


SCHEMA = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer"},
        "options": {"type": "object", "properties": {"depth": {"type": "integer"}}},
    },
}

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


# --- params schema -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ({"limit": "ten"}, "limit", "integer"),
        ({"options": {"depth": "deep"}}, "options.depth", "integer"),
        ({"options": []}, "options", "object"),
    ],
)
def test_params_that_break_the_schema_are_refused_naming_the_param(
    params: dict[str, Any], param: str, words: str
) -> None:
    verdict = rules.evaluate(policy(params_schema=SCHEMA), facts(params=params))

    assert verdict.decision == DENY
    (reason,) = verdict.reasons
    assert (reason.code, reason.param, reason.step) == ("invalid_params", param, 5)
    assert reason.message.startswith(f"{param}: ")
    assert words in reason.message


def test_a_missing_required_param_is_refused_naming_it() -> None:
    schema = {"type": "object", "required": ["path"], "properties": {"path": {"type": "string"}}}

    verdict = rules.evaluate(policy(params_schema=schema), facts(params={}))

    (reason,) = verdict.reasons
    assert reason.code == "invalid_params"
    assert reason.param == "params"
    assert '"path"' in reason.message
    assert "required" in reason.message


def test_only_the_first_schema_error_is_named() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["c"],
    }

    verdict = rules.evaluate(policy(params_schema=schema), facts(params={"a": "x", "b": "y"}))

    assert verdict.codes == ["invalid_params"]


def test_params_that_fit_the_schema_pass() -> None:
    verdict = rules.evaluate(
        policy(params_schema=SCHEMA), facts(params={"limit": 3, "options": {"depth": 2}})
    )

    assert verdict.decision == ALLOW
    assert verdict.codes == []


def test_an_invalid_param_is_reported_without_its_value_in_full() -> None:
    # The deciding reason's message is what the violation records (SPEC §6: "values truncated,
    # never secrets in full").
    secret = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    schema = {"type": "object", "properties": {"token": {"type": "integer"}}}

    verdict = rules.evaluate(policy(params_schema=schema), facts(params={"token": secret}))

    (reason,) = verdict.reasons
    assert reason.code == "invalid_params"
    assert reason.param == "token"
    assert secret not in reason.message
    assert secret not in str(reason.as_json())


# --- forbidden patterns --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "params", "param", "pattern"),
    [
        pytest.param([r"\.env$"], {"path": "/app/.env"}, "path", r"\.env$", id="top-level"),
        pytest.param(
            ["id_rsa$"],
            {"files": [{"name": "a.txt"}, {"name": "b.txt"}, {"name": "/home/u/.ssh/id_rsa"}]},
            "files[2].name",
            "id_rsa$",
            id="in-a-list",
        ),
        pytest.param(
            ["secret"],
            {"a": {"b": {"c": ["fine", "The SeCrEt plan"]}}},
            "a.b.c[1]",
            "secret",
            id="deeply-nested-mixed-case",
        ),
        pytest.param(
            ["password"],
            {"headers": {"X-Password": "x"}},
            "headers.X-Password (a key)",
            "password",
            id="a-key",
        ),
        pytest.param(
            [r"DROP\s+TABLE"],
            {"sql": "drop   table users;"},
            "sql",
            r"DROP\s+TABLE",
            id="upper-case-pattern-lower-case-value",
        ),
        pytest.param(
            ["shutdown"], {"cmd": "SHUTDOWN -h now"}, "cmd", "shutdown", id="upper-case-value"
        ),
        pytest.param(
            [r"\.env$"], {"path": "/app/.env\n"}, "path", r"\.env$", id="trailing-newline"
        ),
        pytest.param(["^/etc/"], {"path": "notes\n/etc/shadow"}, "path", "^/etc/", id="2nd-line"),
    ],
)
def test_a_forbidden_pattern_anywhere_in_the_params_denies_naming_param_and_pattern(
    patterns: list[str], params: dict[str, Any], param: str, pattern: str
) -> None:
    verdict = rules.evaluate(policy(forbidden_patterns=patterns), facts(params=params))

    assert verdict.decision == DENY
    (reason,) = verdict.reasons
    assert (reason.code, reason.param, reason.pattern, reason.step) == (
        "forbidden_pattern",
        param,
        pattern,
        6,
    )
    assert param in reason.message
    assert pattern in reason.message


@pytest.mark.parametrize(
    ("patterns", "params"),
    [
        ([r"\.env$"], {"path": "/app/.env.example"}),
        (["^/etc/"], {"path": "/home/etc/x"}),
        (["password"], {"pass": "word"}),
        (["secret"], {}),
    ],
)
def test_params_without_a_forbidden_pattern_pass(
    patterns: list[str], params: dict[str, Any]
) -> None:
    verdict = rules.evaluate(policy(forbidden_patterns=patterns), facts(params=params))

    assert verdict.decision == ALLOW
    assert verdict.codes == []


def test_each_pattern_that_matches_is_listed_in_the_policys_order() -> None:
    verdict = rules.evaluate(
        policy(forbidden_patterns=["secret", "password", "token"]),
        facts(params={"q": "token, password"}),
    )

    assert [reason.pattern for reason in verdict.reasons] == ["password", "token"]


def test_a_pattern_reason_shows_the_value_only_as_an_excerpt() -> None:
    value = "password=hunter2-correct-horse-battery"

    verdict = rules.evaluate(policy(forbidden_patterns=["password"]), facts(params={"q": value}))

    (reason,) = verdict.reasons
    assert "hunter2" not in reason.message
    assert reason.excerpt != value
    assert value.startswith(reason.excerpt.removesuffix("…"))
    assert reason.as_json() == {
        "code": "forbidden_pattern",
        "message": reason.message,
        "effect": DENY,
        "param": "q",
        "pattern": "password",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/../etc/passwd",  # noqa: S108 - a path an agent sends, not a file we open
        "//etc/passwd",
        "/./etc/shadow",
        "/var/log/../../ETC/passwd",
        "/app/data/../../../etc/hosts",
    ],
)
def test_a_path_that_resolves_into_a_forbidden_place_is_caught(path: str) -> None:
    verdict = rules.evaluate(policy(forbidden_patterns=["^/etc/"]), facts(params={"path": path}))

    assert verdict.decision == DENY
    (reason,) = verdict.reasons
    assert (reason.code, reason.param, reason.pattern) == ("forbidden_pattern", "path", "^/etc/")


@pytest.mark.parametrize("path", ["/var/etc/passwd", "etc/passwd", "../etc/passwd", "/var/./x"])
def test_a_path_that_does_not_resolve_into_a_forbidden_place_passes(path: str) -> None:
    verdict = rules.evaluate(policy(forbidden_patterns=["^/etc/"]), facts(params={"path": path}))

    assert verdict.decision == ALLOW


def test_a_pattern_matching_a_path_both_as_written_and_resolved_is_counted_once() -> None:
    verdict = rules.evaluate(
        policy(forbidden_patterns=["passwd"]), facts(params={"path": "/etc/../etc/passwd"})
    )

    assert verdict.codes == ["forbidden_pattern"]


@pytest.mark.parametrize(
    ("matches", "listed", "summary"),
    # Past ten, the rest are not counted (the check stops looking): "… and more matches."
    [(1, 1, None), (10, 10, None), (11, 10, "… and more matches."), (25, 10, "… and more")],
)
def test_more_than_ten_pattern_matches_are_summed_up_in_one_last_reason(
    matches: int, listed: int, summary: str | None
) -> None:
    verdict = rules.evaluate(
        policy(forbidden_patterns=["shutdown"]), facts(params={"cmds": ["shutdown"] * matches})
    )

    found = reasons_of(verdict, "forbidden_pattern")
    named = [reason for reason in found if reason.param]
    assert [reason.param for reason in named] == [f"cmds[{i}]" for i in range(listed)]
    if summary is None:
        assert len(found) == listed
    else:
        assert len(found) == listed + 1
        last = found[-1]
        assert last.message.startswith(summary)
        assert (last.effect, last.step, last.param, last.pattern) == (DENY, 6, "", "")
    assert verdict.decision == DENY


# --- allowed resources ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        pytest.param({"path": "/app/data"}, [], id="the-prefix-itself"),
        pytest.param({"path": "/app/data/x"}, [], id="under-the-prefix"),
        pytest.param({"file_path": "/app/data/a/b/c.csv"}, [], id="deep-under"),
        pytest.param({"path": "/app//data/x"}, [], id="doubled-slash"),
        pytest.param({"path": "/app/database"}, ["path"], id="not-at-a-segment-boundary"),
        pytest.param({"path": "/app/data/../secrets"}, ["path"], id="dot-dot"),
        pytest.param({"path": "/app/data/x/.."}, ["path"], id="trailing-dot-dot"),
        pytest.param({"resource": "/app/data/./x"}, ["resource"], id="dot-segment"),
        pytest.param({"path": "/srv/data/x"}, ["path"], id="elsewhere"),
        pytest.param({"path": ""}, ["path"], id="empty"),
        pytest.param({"path": ["/app/data/x"]}, ["path"], id="a-list"),
        pytest.param({"path": 42}, ["path"], id="a-number"),
        pytest.param({"path": None}, ["path"], id="null"),
        pytest.param({"path": {"p": "/app/data/x"}}, ["path"], id="an-object"),
        pytest.param({}, [], id="no-resource-key"),
        pytest.param({"target": "/etc/passwd"}, [], id="not-a-resource-key"),
        pytest.param(
            {"path": "/app/data/x", "file_path": "/srv/y"}, ["file_path"], id="one-of-two"
        ),
        pytest.param(
            {"resource": "/srv", "file_path": "/etc", "path": "/root"},
            ["path", "file_path", "resource"],
            id="three-bad-keys",
        ),
    ],
)
def test_resource_params_must_lie_under_an_allowed_prefix(
    params: dict[str, Any], refused: list[str]
) -> None:
    verdict = rules.evaluate(
        policy(allowed_resources=["/app/data"]), facts(params=params, autonomy_level=5)
    )

    found = reasons_of(verdict, "resource_not_allowed")
    assert sorted(reason.param for reason in found) == sorted(refused)
    assert all(reason.effect == DENY and reason.step == 7 for reason in found)
    assert verdict.decision == (DENY if refused else ALLOW)


def test_a_refused_non_string_resource_shows_its_type_not_its_value() -> None:
    verdict = rules.evaluate(
        policy(allowed_resources=["/app/data"]), facts(params={"path": ["/app/data/x"]})
    )

    (reason,) = verdict.reasons
    assert reason.excerpt == "list"


def test_a_refused_resource_names_the_allowed_prefixes_but_not_the_value() -> None:
    verdict = rules.evaluate(
        policy(name="write_file", allowed_resources=["/app/data", "/srv/work"]),
        facts(params={"path": "/home/alice/credentials.json"}),
    )

    (reason,) = verdict.reasons
    assert "/app/data, /srv/work" in reason.message
    assert "write_file" in reason.message
    assert "credentials" not in reason.message
    assert reason.excerpt != "/home/alice/credentials.json"


def test_a_policy_without_allowed_resources_allows_any_path() -> None:
    verdict = rules.evaluate(policy(), facts(params={"path": "/anything/at/all"}))

    assert verdict.decision == ALLOW


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
