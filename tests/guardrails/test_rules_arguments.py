"""The check's steps that read an action's arguments (SPEC §6): the params schema, forbidden
patterns anywhere in them, allowed resource prefixes. Pure functions, as in test_rules.py."""

from __future__ import annotations

from typing import Any

import pytest

from guardrails import rules
from guardrails.rules import ALLOW, DENY
from tests.guardrails.rulekit import SCHEMA, facts, policy, reasons_of

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
