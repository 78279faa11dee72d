"""Matching an agent's arguments (SPEC §6): RE2 pattern sets, the strings of a value, paths,
resource prefixes, excerpts, and hostile patterns and inputs that must stay fast (SPEC §10.7:
"a hostile pattern or input never takes longer than 10 ms")."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from guardrails import matching, rules

# --- pattern sets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("password", "PASSWORD"),
        ("PASSWORD", "my password"),
        ("PaSsWoRd", "pAsSwOrD"),
        (r"DROP\s+TABLE", "drop\ttable users"),
        ("пароль", "ПАРОЛЬ: x"),
        ("^/ETC/", "/etc/passwd"),
    ],
)
def test_patterns_match_whatever_the_case(pattern: str, text: str) -> None:
    assert matching.PatternSet([pattern]).matching(text) == [pattern]


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"\.env$", "/app/.env", True),
        (r"\.env$", "/app/.env\n", True),  # RE2's plain `$` would not see past the newline
        (r"\.env$", "/app/.env\nREADME", True),
        (r"id_rsa$", "notes\n~/.ssh/id_rsa\n\n", True),
        (r"^/etc/", "cat\n/etc/shadow", True),
        (r"\.env$", "/app/.env.example", False),
        (r"^/etc/", "/home/etc/x", False),
    ],
)
def test_line_anchors_match_at_every_line_break(pattern: str, text: str, matches: bool) -> None:
    assert (matching.PatternSet([pattern]).matching(text) == [pattern]) is matches


@pytest.mark.parametrize("pattern", [r"\A/etc/", r"secret\z", "(?-m)^x$", "(?s-m:^x)"])
def test_whole_text_anchors_are_refused(pattern: str) -> None:
    # The strings are scanned joined by newlines, where only ^ and $ keep their meaning.
    [problem] = matching.pattern_problems([pattern])
    assert "not supported" in problem


@pytest.mark.parametrize("pattern", [r"\\A", r"a\\z", "(?i)x", "(?m)^x"])
def test_escaped_backslashes_and_other_flags_are_fine(pattern: str) -> None:
    assert matching.pattern_problems([pattern]) == []


def test_a_set_answers_the_matching_patterns_in_the_policys_order() -> None:
    patterns = ["token", "secret", "password", "mkfs"]
    matcher = matching.PatternSet(patterns)

    assert matcher.matching("password and token and secret") == ["token", "secret", "password"]
    assert matcher.matching("nothing to see") == []
    assert matcher.matching("") == []
    assert matcher.patterns == tuple(patterns)


def test_a_pattern_matches_anywhere_in_the_text() -> None:
    assert matching.PatternSet(["rm\\s+-rf\\s+/"]).matching("ls; rm -rf / # oops") == [
        "rm\\s+-rf\\s+/"
    ]


@pytest.mark.parametrize("patterns", [["fine", "(?=x)"], [""], ["x"] * 51, ["a" * 501]])
def test_a_set_cannot_be_built_from_patterns_with_problems(patterns: list[str]) -> None:
    with pytest.raises(matching.PatternError) as refused:
        matching.PatternSet(patterns)

    assert str(refused.value) == "; ".join(matching.pattern_problems(patterns))
    assert str(refused.value)


# --- pattern problems --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patterns",
    [
        [],
        ["password"],
        [r"\.env$", "^/etc/", r"rm\s+-rf\s+/", r"DELETE\s+FROM.*WHERE\s+1=1"],
        ("a tuple", "is fine"),
        ["a" * 500],
        ["x"] * 50,
        ["(a+)+$"],  # hostile to a backtracking engine, harmless to RE2
        ["(?i)Mixed", r"\bword\b", "[[:alpha:]]+", r"\p{Greek}"],
    ],
)
def test_patterns_re2_accepts_have_no_problems(patterns: list[str]) -> None:
    assert matching.pattern_problems(patterns) == []


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("(?=x)", id="lookahead"),
        pytest.param("(?!x)", id="negative-lookahead"),
        pytest.param("(?<=a)b", id="lookbehind"),
        pytest.param("(?<!a)b", id="negative-lookbehind"),
        pytest.param(r"(a)\1", id="backreference"),
        pytest.param("(?P<x>a)(?P=x)", id="named-backreference"),
        pytest.param("(?>a)", id="atomic-group"),
        pytest.param("a++", id="possessive"),
        pytest.param("(unclosed", id="syntax"),
        pytest.param("a{2000}", id="repeat-too-large"),
    ],
)
def test_a_pattern_re2_refuses_is_reported_with_its_reason(pattern: str) -> None:
    (problem,) = matching.pattern_problems(["fine", pattern])

    assert problem.startswith(f"{pattern!r} is not a pattern RE2 accepts: ")
    assert len(problem) > len(f"{pattern!r} is not a pattern RE2 accepts: .")


def test_an_empty_pattern_is_refused() -> None:
    assert matching.pattern_problems(["ok", ""]) == ["An empty pattern would match everything."]


def test_a_pattern_longer_than_500_characters_is_refused_showing_its_start() -> None:
    pattern = "b" * 40 + "c" * 461

    (problem,) = matching.pattern_problems([pattern])

    assert problem == f"{'b' * 40!r}… is longer than 500 characters."


def test_more_than_50_patterns_are_refused() -> None:
    assert matching.pattern_problems(["x"] * 51) == ["At most 50 forbidden patterns per policy."]


@pytest.mark.parametrize(
    "patterns", ["password", None, 5, {"a": "b"}, ["a", 1], [None], [["nested"]], b"bytes"]
)
def test_patterns_that_are_not_a_list_of_strings_are_refused(patterns: object) -> None:
    assert matching.pattern_problems(patterns) == ["Forbidden patterns are a list of strings."]


def test_patterns_re2_accepts_one_by_one_also_build_one_set_or_are_reported() -> None:
    # Each is small, but RE2 compiles a policy's patterns into one program with a memory
    # budget: an admin who may save these must get a set that matches, or a message.
    patterns = ["password", *(rf"\w{{1,1000}}{i}" for i in range(20))]

    problems = matching.pattern_problems(patterns, probe=False)

    assert problems == [
        "RE2 cannot compile these patterns together: too large; simplify or split them."
    ]
    with pytest.raises(matching.PatternError):
        matching.PatternSet(patterns)


def test_every_problem_is_reported_at_once() -> None:
    problems = matching.pattern_problems(["", "ok", "(?=x)", "z" * 600])

    assert len(problems) == 3
    assert problems[0] == "An empty pattern would match everything."
    assert "'(?=x)'" in problems[1]
    assert "longer than 500" in problems[2]


# --- the strings of a value --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("top", [("params", "top")], id="a-bare-string"),
        pytest.param({}, [], id="empty"),
        pytest.param(
            {"path": "/app/x", "n": 3, "ok": True, "none": None, "f": 1.5},
            [
                ("path (a key)", "path"),
                ("path", "/app/x"),
                ("n (a key)", "n"),
                ("ok (a key)", "ok"),
                ("none (a key)", "none"),
                ("f (a key)", "f"),
            ],
            id="scalars-are-not-strings",
        ),
        pytest.param(
            {"files": [{"name": "a"}, {"name": "b"}, {"name": "c"}]},
            [
                ("files (a key)", "files"),
                ("files[0].name (a key)", "name"),
                ("files[0].name", "a"),
                ("files[1].name (a key)", "name"),
                ("files[1].name", "b"),
                ("files[2].name (a key)", "name"),
                ("files[2].name", "c"),
            ],
            id="files[2].name",
        ),
        pytest.param(
            {"m": [["x", ["y"]], "z"]},
            [("m (a key)", "m"), ("m[0][0]", "x"), ("m[0][1][0]", "y"), ("m[1]", "z")],
            id="lists-in-lists",
        ),
        pytest.param(
            {"env": {"AWS_SECRET_ACCESS_KEY": ""}},
            [
                ("env (a key)", "env"),
                ("env.AWS_SECRET_ACCESS_KEY (a key)", "AWS_SECRET_ACCESS_KEY"),
                ("env.AWS_SECRET_ACCESS_KEY", ""),
            ],
            id="keys-and-empty-values",
        ),
        pytest.param(
            ["a", "b"],
            [("params (joined by spaces)", "a b"), ("params[0]", "a"), ("params[1]", "b")],
            id="a-bare-list",
        ),
        pytest.param(
            {"argv": ["rm", "-rf", "/"]},
            [
                ("argv (a key)", "argv"),
                ("argv (joined by spaces)", "rm -rf /"),
                ("argv[0]", "rm"),
                ("argv[1]", "-rf"),
                ("argv[2]", "/"),
            ],
            id="a-command-line-as-a-list",
        ),
        pytest.param(
            {"password=hunter2-and-more": True, "ghp_5mJ3kQ9xL2vB8nR4tY6wP1zC7dF0hG2aS9eU": 1},
            [
                ("['password…'] (a key)", "password=hunter2-and-more"),
                ("['ghp_5mJ3kQ9xL…'] (a key)", "ghp_5mJ3kQ9xL2vB8nR4tY6wP1zC7dF0hG2aS9eU"),
            ],
            id="keys-that-may-be-secrets-are-named-in-part",
        ),
    ],
)
def test_every_string_is_found_with_where_it_is(
    value: Any, expected: list[tuple[str, str]]
) -> None:
    assert sorted(matching.strings(value)) == sorted(expected)


def test_a_list_of_strings_is_walked_in_order() -> None:
    assert [where for where, _ in matching.strings({"k": ["a", "b", "c"]})][2:] == [
        "k[0]",
        "k[1]",
        "k[2]",
    ]


@pytest.mark.parametrize(
    "value",
    [
        {"a": {"b": ["x", {"c": "y"}], "d": ["p", "q"]}, "e": "z"},
        [["m", "n"], {"k": [1, "v", ["w"]]}, "//x/../y"],
        {"k": [""] * 50, "path": "/app/.env"},
    ],
)
def test_the_names_are_in_the_order_the_patterns_scan(value: Any) -> None:
    # rules._patterns finds matches by their index in `texts` and names them with `names`.
    found = matching.texts(value)
    assert [text for _, text in matching.strings(value)] == found.texts[: found.strings]


def test_objects_nested_ten_thousand_levels_deep_do_not_overflow_the_stack() -> None:
    value: Any = "the bottom"
    for _ in range(10_000):
        value = {"a": value}

    count, last = 0, ("", "")
    for found in matching.strings(value):
        count, last = count + 1, found

    assert count == 10_001  # 10 000 keys and the string at the bottom
    assert last == (".".join(["a"] * 10_000), "the bottom")


def test_lists_nested_ten_thousand_levels_deep_do_not_overflow_the_stack() -> None:
    value: Any = "the bottom"
    for _ in range(10_000):
        value = [value]

    assert list(matching.strings(value)) == [("params" + "[0]" * 10_000, "the bottom")]


def test_a_forbidden_string_ten_thousand_levels_deep_is_still_found() -> None:
    value: Any = "/etc/passwd"
    for _ in range(10_000):
        value = {"a": value}
    policy = rules.compile_policy(
        id=1,
        name="write_file",
        scope="global",
        version=1,
        version_id=None,
        category="write",
        risk_level="low",
        forbidden_patterns=["^/etc/"],
    )

    verdict = rules.evaluate(policy, rules.Facts(action="write_file", params=value))

    assert verdict.codes == ["forbidden_pattern"]
    assert verdict.reasons[0].param == ".".join(["a"] * 10_000)


# --- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("/tmp/../etc/passwd", "/etc/passwd"),  # noqa: S108 - a path an agent sends
        ("//etc/passwd", "/etc/passwd"),  # POSIX keeps a leading "//"; a pattern must not care
        ("///etc/passwd", "/etc/passwd"),
        ("/./etc/shadow", "/etc/shadow"),
        ("/../../etc", "/etc"),
        ("/a//b", "/a/b"),
        ("/a/b/", "/a/b"),
        ("a/./b", "a/b"),
        ("a/b/../../../c", "../c"),
        ("/etc/passwd", None),
        ("etc/passwd", None),
        ("../etc/passwd", None),
        ("no slash here", None),
        ("", None),
        ("..", None),
    ],
)
def test_a_path_is_resolved_only_when_that_changes_it(text: str, normal: str | None) -> None:
    assert matching.normal_path(text) == normal


# --- allowed resources -------------------------------------------------------------------------

DATA = ["/app/data"]
API = ["https://api.example.com"]


@pytest.mark.parametrize(
    ("prefixes", "value", "inside"),
    [
        (DATA, "/app/data", True),
        (DATA, "/app/data/x", True),
        (DATA, "/app/data/a/b/c.csv", True),
        (DATA, "/app//data///x", True),
        (DATA, "/app/data/.hidden", True),
        (DATA, "/app/data/..not-a-parent", True),
        (DATA, "/app/database", False),
        (DATA, "/app/data2/x", False),
        (DATA, "/app/dat", False),
        (DATA, "/app", False),
        (DATA, "app/data/x", False),
        (DATA, "/srv/app/data/x", False),
        (DATA, "", False),
        (DATA, "/app/data/../secrets", False),
        (DATA, "/app/data/..", False),
        (DATA, "/app/data/x/../../..", False),
        (DATA, "/app/data/.", False),
        (DATA, "/app/data/./x", False),
        (DATA, "./app/data", False),
        (DATA, "../app/data/x", False),
        (DATA, "/APP/DATA/x", False),
        (["/app/data/"], "/app/data/x", True),
        (["/app/data/"], "/app/database", False),
        (["/app/data", "/srv/work"], "/srv/work/a", True),
        (["/app/data", "/srv/work"], "/srv/workshop", False),
        ([], "/app/data/x", False),
        (API, "https://api.example.com", True),
        (API, "https://api.example.com/v1/items", True),
        (API, "https://api.example.com?q=1", True),
        (API, "https://api.example.com#top", True),
        (API, "https://api.example.com//v1", True),
        (API, "https://api.example.com.evil.net/v1", False),
        (API, "https://api.example.com@evil.net/", False),
        (API, "https://api.example.com:8443/", False),
        (API, "https://api.example.com/v1/../../admin", False),
        (API, "https://api.example.com/./v1", False),
        (API, "http://api.example.com/v1", False),
    ],
)
def test_a_resource_is_inside_a_prefix_only_at_a_segment_boundary_and_without_dot_segments(
    prefixes: list[str], value: str, inside: bool
) -> None:
    assert matching.resource_in(value, prefixes) is inside


# --- excerpts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("secret", "se…"),
        ("0123456789", "012…"),
        ("abc", "a…"),
        ("ab", "…"),
        ("x", "…"),
        ("", "…"),
        ("a" * 100, "a" * 16 + "…"),
    ],
)
def test_an_excerpt_shows_a_start_of_the_value(value: str, shown: str) -> None:
    assert matching.excerpt(value) == shown


@pytest.mark.parametrize("length", [*range(1, 100), 256 * 1024])
def test_an_excerpt_is_never_the_whole_value_and_at_most_half_and_40_characters(
    length: int,
) -> None:
    value = "".join(chr(ord("a") + i % 26) for i in range(length))

    shown = matching.excerpt(value)

    assert shown.endswith("…")
    start = shown.removesuffix("…")
    assert value.startswith(start)
    assert start != value
    assert len(start) <= 40
    assert len(start) <= length / 2


# --- hostile patterns and inputs -----------------------------------------------------------
# "No input can make a check slow" (SPEC §6); "a hostile pattern or input never takes longer
# than 10 ms" (SPEC §10.7). Each case times `rules.evaluate` alone and keeps the best of a few
# runs, so a busy machine does not fail it; RE2 answers these in well under a millisecond.

LIMIT_SECONDS = 0.010
RUNS = 5

ALL_A = "a" * 50_000
A_THEN_BANG = "a" * 50_000 + "!"
# The most an agent may send: arguments over 64 KB are refused before any check.
BIG = "a" * (64 * 1024 - 16)

# The classic catastrophic-backtracking patterns, and whether each matches a run of `a`s and a
# run of `a`s ending in "!" (as a backtracking engine would answer on a short input).
REDOS = [
    (r"(a+)+$", True, False),
    (r"(a|aa)+$", True, False),
    (r"(a|a?)+$", True, True),
    (r"(a*)*$", True, True),
    (r"(.*a){20}$", True, False),
    (r"^(a+)+b", False, False),
    (r"(x+x+)+y", False, False),
    (r"([a-z]+)*[0-9]$", False, False),
    (r"^(\w+\s?)*$", True, False),
    (r"(\w+\s?)*$", True, True),
    (r"^(([a-z])+.)+[A-Z]([a-z])+$", True, False),
]


def fastest(call: Callable[[], object], runs: int = RUNS) -> float:
    """The shortest of `runs` timings of `call`, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def policy_with(**fields: Any) -> rules.CompiledPolicy:
    base: dict[str, Any] = {
        "id": 1,
        "name": "run_command",
        "scope": "global",
        "version": 1,
        "version_id": None,
        "category": "execute",
        "risk_level": "low",
    }
    return rules.compile_policy(**{**base, **fields})


def value_matched(verdict: rules.Verdict) -> bool:
    """Whether a pattern matched the value of `q` (a pattern matching "" matches the key too)."""
    return any(reason.param == "q" for reason in verdict.reasons)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        pytest.param(ALL_A, 1, id="50KB-of-a"),
        pytest.param(A_THEN_BANG, 2, id="50KB-of-a-then-bang"),
        pytest.param(BIG, 1, id="64KB-of-a"),
    ],
)
@pytest.mark.parametrize("case", REDOS, ids=[case[0] for case in REDOS])
def test_a_redos_pattern_against_a_long_input_is_answered_right_within_10_ms(
    case: tuple[str, bool, bool], text: str, column: int
) -> None:
    pattern, matches = case[0], case[column]
    policy = policy_with(forbidden_patterns=[pattern])
    facts = rules.Facts(action="run_command", params={"q": text})

    took = fastest(lambda: rules.evaluate(policy, facts))

    assert value_matched(rules.evaluate(policy, facts)) is matches
    assert took < LIMIT_SECONDS, f"{pattern} took {took * 1000:.1f} ms"


@pytest.mark.parametrize(
    "pattern",
    ["^(a+)+$", "^(a|aa)+$", "^(.*a){20}$", r"^(\w+\s?)*$", "^(([a-z])+.)+[A-Z]([a-z])+$"],
)
@pytest.mark.parametrize("length", [50_000, 64 * 1024 - 16])
def test_a_hostile_pattern_in_a_params_schema_is_answered_within_10_ms(
    pattern: str, length: int
) -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string", "pattern": pattern}}}
    policy = policy_with(params_schema=schema)
    facts = rules.Facts(action="run_command", params={"q": "a" * length + "!"})

    took = fastest(lambda: rules.evaluate(policy, facts))

    verdict = rules.evaluate(policy, facts)
    assert verdict.codes == ["invalid_params"]
    assert verdict.reasons[0].param == "q"
    assert took < LIMIT_SECONDS, f"{pattern} took {took * 1000:.1f} ms"


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        pytest.param(
            "/app/data/" + "../" * 80_000 + "etc/passwd",
            ["forbidden_pattern", "resource_not_allowed"],
            id="dot-dot-run",
        ),
        # Longer than any path (4096): refused outright, without scanning it for prefixes.
        pytest.param("/app/data/" + "x/" * 30_000, ["resource_not_allowed"], id="30k-segments"),
    ],
)
def test_a_long_path_through_every_kind_of_check_is_answered_within_10_ms(
    text: str, codes: list[str]
) -> None:
    policy = policy_with(
        forbidden_patterns=[r"\.env$", "^/etc/", r"(a+)+$", r"rm\s+-rf\s+/"],
        allowed_resources=["/app/data"],
        params_schema={"type": "object", "properties": {"path": {"pattern": "^(/[^/]*)+$"}}},
    )
    facts = rules.Facts(action="run_command", params={"path": text})

    took = fastest(lambda: rules.evaluate(policy, facts))

    assert rules.evaluate(policy, facts).codes == codes
    assert took < LIMIT_SECONDS, f"took {took * 1000:.1f} ms"


@pytest.mark.parametrize("pattern", ["[a-q][^u-z]{20}x", r"\w{1,1000}0"])
def test_a_pattern_that_makes_re2s_dfa_thrash_cannot_be_saved(pattern: str) -> None:
    # `[a-q][^u-z]{n}x` needs 2**n DFA states to scan a text of `a`s and `r`s: the classic case
    # that makes a DFA thrash its cache (200 ms over 250 KB). The probe refuses it at saving.
    chooser = random.Random(0)
    text = "".join(chooser.choice("ar") for _ in range(60_000))
    took = fastest(lambda: matching.PatternSet([pattern]).matching(text))
    assert took > LIMIT_SECONDS / 10, "the case still shows what the probe guards against"

    [problem] = matching.pattern_problems([pattern])

    assert "too slow to match" in problem


def test_a_body_of_tens_of_thousands_of_short_strings_is_answered_within_10_ms() -> None:
    # 21 000 empty strings are 64 KB of compact JSON: the most an agent may send.
    policy = policy_with(forbidden_patterns=[r"\.env$", r"id_rsa$", r"\.pem$", "password"])
    facts = rules.Facts(action="run_command", params={"k": [""] * 21_000})

    took = fastest(lambda: rules.evaluate(policy, facts))

    assert rules.evaluate(policy, facts).decision == "allow"
    assert took < LIMIT_SECONDS, f"took {took * 1000:.1f} ms"
