"""Fairness of decisions (SPEC §12): approval rates with the disparate-impact ratio, and the
seed's selection-bias chi-square, on hand-built data whose figures are worked out by hand."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from agents.models import Agent
from approvals.models import ApprovalRequest, Status, Vote
from guardrails.models import Policy, PolicyVersion
from monitoring import fairness
from monitoring.fairness import (
    ApproverVotes,
    bias_test,
    chi_square_independence,
    chi_square_p_value,
    rate_groups,
)

START = datetime.fromisoformat("2026-03-02T00:00:00+00:00")
END = START + timedelta(days=7)
DURING = START + timedelta(days=2)

_counter = iter(range(1, 1_000_000))


# --- building the data ----------------------------------------------------------------------


def agent(team: str = "", prefix: str = "agent") -> Agent:
    """An agent whose name sorts by `prefix`."""
    return Agent.objects.create(name=f"{prefix}-{next(_counter)}", team=team)


def person(prefix: str = "person") -> User:
    """A person whose name sorts by `prefix` (the tests' approvers are listed by name)."""
    return User.objects.create(username=f"{prefix}-{next(_counter)}")


def version(category: str, *, in_snapshot: bool = True) -> PolicyVersion:
    """A policy version of `category`: named in its snapshot (as every version the policy file
    writes), or only on its policy."""
    policy = Policy.objects.create(
        name=f"fair_action_{next(_counter)}", category=category, risk_level="medium"
    )
    return PolicyVersion.objects.create(
        policy=policy,
        name=policy.name,
        scope="global",
        version=1,
        change="created",
        snapshot={"category": category} if in_snapshot else {},
    )


def request_row(
    for_agent: Agent,
    *,
    status: str = Status.APPROVED,
    risk: str = "medium",
    decided_by: User | None = None,
    decided_at: datetime = DURING,
    policy_version: PolicyVersion | None = None,
    created_at: datetime | None = None,
    params: dict[str, Any] | None = None,
    justification: str = "",
    changed: bool = False,
) -> ApprovalRequest:
    """An unsaved request row, for bulk_create (the services would take minutes for thousands)."""
    created = created_at or decided_at - timedelta(minutes=5)
    return ApprovalRequest(
        agent=for_agent,
        status=status,
        action="fair_action",
        params=params if params is not None else {},
        params_sha256="0" * 64,
        risk_level=risk,
        claimed_risk_level=risk,
        risk_source="claim",
        policy_version=policy_version,
        urgency="normal",
        justification=justification,
        created_at=created,
        expires_at=created + timedelta(days=1),
        escalates_at=created + timedelta(hours=12),
        route=["team_lead"],
        current_tier="team_lead",
        first_tier_rank=0,
        current_params_sha256="0" * 64,
        decided_at=None if status == Status.PENDING else decided_at,
        decided_by=decided_by,
        modified_params={"changed": True} if changed else None,
    )


def decided(
    for_agent: Agent,
    decider: User,
    *,
    approved: int,
    rejected: int,
    changed: int = 0,
    risk: str = "medium",
    policy_version: PolicyVersion | None = None,
) -> None:
    """`approved` + `rejected` requests decided by `decider`; `changed` of the approved ones
    were approved with changed arguments."""
    ApprovalRequest.objects.bulk_create(
        [
            request_row(
                for_agent,
                status=Status.APPROVED if n < approved else Status.REJECTED,
                risk=risk,
                decided_by=decider,
                policy_version=policy_version,
                changed=n < changed,
            )
            for n in range(approved + rejected)
        ]
    )


def votes(
    voter: User,
    *,
    approve: int,
    reject: int,
    risk: str = "medium",
    policy_version: PolicyVersion | None = None,
    voided: bool = False,
    for_agent: Agent | None = None,
    start: datetime = DURING,
) -> None:
    """`approve` then `reject` votes by `voter`, one request each, a second apart."""
    owner = for_agent or agent()
    rows = [
        request_row(owner, status=Status.PENDING, risk=risk, policy_version=policy_version)
        for _ in range(approve + reject)
    ]
    ApprovalRequest.objects.bulk_create(rows)
    Vote.objects.bulk_create(
        [
            Vote(
                request=row,
                voter=voter,
                voter_name=voter.username,
                vote="approve" if n < approve else "reject",
                params_sha256="0" * 64,
                voided_at=start if voided else None,
                created_at=start + timedelta(seconds=n),
            )
            for n, row in enumerate(rows)
        ]
    )


def by_group(rates: fairness.ApprovalRates, kind: str, risk: str) -> dict[str, Any]:
    found = next(k for k in rates.kinds if k.kind == kind)
    return {group.group: group for group in found.groups if group.risk_level == risk}


# --- the statistics, as plain functions -----------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # best 20/20 = 1.0; 16/20 = 0.8 exactly is not below 0.8: not flagged
        ([("medium", "a", 20, 20, 0), ("medium", "b", 20, 16, 0)], {"a": 1.0, "b": 0.8}),
        # 19/25 = 0.76 < 0.8: flagged
        ([("medium", "a", 20, 20, 0), ("medium", "b", 25, 19, 0)], {"a": 1.0, "b": 0.76}),
        # 19 decisions, all approved, is not enough data (19 of 20): b is the best instead
        ([("medium", "a", 19, 19, 0), ("medium", "b", 20, 10, 0)], {"a": None, "b": 1.0}),
        # every comparable group always refused: no best rate, no ratio
        ([("medium", "a", 20, 0, 0), ("medium", "b", 30, 0, 0)], {"a": None, "b": None}),
    ],
)
def test_the_ratio_is_against_the_best_group_with_enough_data(counts, expected) -> None:
    groups = {g.group: g for g in rate_groups("agent", counts, min_sample=20)}
    assert {name: g.ratio for name, g in groups.items()} == pytest.approx(expected)
    assert {name: g.flagged for name, g in groups.items()} == {
        name: ratio is not None and ratio < 0.8 for name, ratio in expected.items()
    }


def test_groups_are_compared_within_their_risk_level_only() -> None:
    groups = rate_groups(
        "agent",
        [
            ("low", "a", 20, 20, 0),
            ("critical", "a", 20, 5, 0),  # 0.25, but the only critical group: ratio 1
            ("low", "b", 20, 15, 0),  # 0.75 / 1.0: flagged
        ],
        min_sample=20,
    )
    assert [(g.risk_level, g.group, g.ratio, g.flagged) for g in groups] == [
        ("low", "a", 1.0, False),
        ("low", "b", 0.75, True),
        ("critical", "a", 1.0, False),
    ]


def test_chi_square_of_a_two_by_two_table_worked_by_hand() -> None:
    # approver X: 60 approve, 20 reject; approver Y: 30 approve, 30 reject; N = 140.
    # For a 2x2 table chi² = N (ad - bc)² / (r1 r2 c1 c2)
    #   = 140 x (60·30 - 20·30)² / (80 · 60 · 90 · 50) = 140 x 1,440,000 / 21,600,000 = 28/3.
    statistic, dof = chi_square_independence([(60, 20), (30, 30)])
    assert statistic == pytest.approx(28 / 3)
    assert dof == 1
    # dof 1: P(X ≥ x) = erfc(√(x/2)) = erfc(√(14/3)) ≈ 0.00225
    assert chi_square_p_value(28 / 3, 1) == pytest.approx(math.erfc(math.sqrt(14 / 3)))
    assert chi_square_p_value(28 / 3, 1) == pytest.approx(0.0022502, rel=1e-4)


def test_chi_square_with_nobody_rejecting_is_zero() -> None:
    assert chi_square_independence([(50, 0), (70, 0), (3, 0)]) == (0.0, 2)
    assert chi_square_p_value(0.0, 2) == 1.0


@pytest.mark.parametrize(
    ("critical", "dof"),
    [
        # the 5 % critical values of the chi-square table
        (3.841458820694124, 1),
        (5.991464547107979, 2),
        (7.814727903251178, 3),
        (9.487729036781154, 4),
        (11.070497693516351, 5),
        (12.591587243743977, 6),
        (14.067140449340169, 7),
        (31.410432844230918, 20),
    ],
)
def test_the_p_value_matches_the_chi_square_table(critical, dof) -> None:
    assert chi_square_p_value(critical, dof) == pytest.approx(0.05, rel=1e-9)


def test_the_p_value_for_two_degrees_of_freedom_is_exp_of_minus_half_x() -> None:
    # dof 2: Q = e^(-x/2)
    assert chi_square_p_value(7.0, 2) == pytest.approx(math.exp(-3.5))
    # dof 3: Q = erfc(√(x/2)) + √(2x/π) e^(-x/2)
    assert chi_square_p_value(7.0, 3) == pytest.approx(
        math.erfc(math.sqrt(3.5)) + math.sqrt(14 / math.pi) * math.exp(-3.5)
    )


def test_the_p_value_neither_overflows_nor_leaves_zero_to_one() -> None:
    assert 0 < chi_square_p_value(1000.0, 50) < 1e-150
    assert chi_square_p_value(0.5, 301) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        chi_square_p_value(1.0, 0)


def _approvers(*table: tuple[int, int]) -> list[ApproverVotes]:
    return [
        ApproverVotes(voter_id=n, name=f"p{n}", approvals=a, rejections=r)
        for n, (a, r) in enumerate(table)
    ]


def test_the_seeds_threshold_is_exceeded_not_met() -> None:
    # (2 approve, 8 reject) vs (48, 42), N = 100: chi² = 100 x (2·42 - 8·48)² / (10·90·50·50)
    #   = 100 x 90,000 / 2,250,000 = 4, exactly the threshold 2 x 2 approvers: not flagged.
    at = bias_test("medium", "write", _approvers((2, 8), (48, 42)))
    assert (at.chi_square, at.dof, at.threshold, at.flagged) == (4.0, 1, 4, False)
    # (1, 9) vs (48, 42): chi² = 100 x (42 - 432)² / (10·90·49·51) = 15,210,000 / 2,249,100 ≈ 6.763
    above = bias_test("medium", "write", _approvers((1, 9), (48, 42)))
    assert above.chi_square == pytest.approx(15_210_000 / 2_249_100)
    assert above.flagged


def test_under_100_votes_or_one_approver_is_not_enough_data() -> None:
    short = bias_test("medium", "write", _approvers((1, 9), (47, 42)))  # 99 votes
    assert (short.chi_square, short.p_value, short.flagged) == (None, None, False)
    assert short.why_not == "99 of 100 votes"
    alone = bias_test("medium", "write", _approvers((10, 140)))
    assert not alone.enough_data
    assert alone.why_not == "1 approver (a comparison needs 2)"


# --- in the database ------------------------------------------------------------------------


@pytest.fixture
def rated(db: None) -> fairness.ApprovalRates:
    """The data set of the hand-worked figures below."""
    write, deploy, red_write = (
        version("write"),
        version("deploy"),
        version("write", in_snapshot=False),
    )
    a1, a2 = agent("blue", "a1"), agent("blue", "a2")
    a3, a4 = agent("", "a3"), agent("red", "a4")
    boss = person()
    # medium risk
    decided(a1, boss, approved=20, rejected=5, changed=2, policy_version=write)  # 20/25 = 0.8
    decided(a2, boss, approved=15, rejected=5, policy_version=deploy)  # 15/20 = 0.75
    decided(a3, boss, approved=18, rejected=12)  # 18/30 = 0.6, no team, no policy
    decided(a4, boss, approved=19, rejected=0, policy_version=red_write)  # 19: not enough
    # high risk
    decided(a1, boss, approved=10, rejected=10, risk="high", policy_version=write)  # 0.5
    decided(a2, boss, approved=5, rejected=15, risk="high", policy_version=deploy)  # 0.25
    # none of these counts: pending; expired (nobody decided); decided by no person; decided
    # before the period; decided at its end (the end is excluded)
    ApprovalRequest.objects.bulk_create(
        [
            request_row(a3, status=Status.PENDING),
            request_row(a3, status=Status.EXPIRED),
            request_row(a3, status=Status.APPROVED),
            *[
                request_row(a3, status=Status.APPROVED, decided_by=boss, decided_at=at)
                for at in (START - timedelta(seconds=1), END)
                for _ in range(30)
            ],
        ]
    )
    return fairness.approval_rates(START, END)


def test_approval_rates_by_agent_per_risk_level(rated) -> None:
    medium = by_group(rated, "agent", "medium")
    a1, a2, a3, a4 = sorted(medium.values(), key=lambda g: g.group)
    # best with enough data: a1 at 20/25 = 0.8 (a4's 19/19 is not enough data)
    assert (a1.decided, a1.approved, a1.changed, a1.ratio, a1.flagged) == (25, 20, 2, 1.0, False)
    # a2: 15/20 = 0.75; 0.75 / 0.8 = 0.9375
    assert (a2.decided, a2.approved) == (20, 15)
    assert a2.ratio == pytest.approx(0.9375)
    assert not a2.flagged
    # a3: 18/30 = 0.6; 0.6 / 0.8 = 0.75 < 0.8
    assert a3.ratio == pytest.approx(0.75)
    assert a3.flagged
    assert a3.best_group == a1.group
    # a4: not enough data (19 of 20), no ratio, and not the best though approved at 100 %
    assert (a4.decided, a4.enough_data, a4.ratio, a4.flagged) == (19, False, None, False)
    high = sorted(by_group(rated, "agent", "high").values(), key=lambda g: g.group)
    # within the high level: a1 at 0.5 is the best; a2 at 0.25 / 0.5 = 0.5, flagged
    assert [(g.rate, g.ratio, g.flagged) for g in high] == [(0.5, 1.0, False), (0.25, 0.5, True)]


def test_approval_rates_by_team(rated) -> None:
    medium = by_group(rated, "team", "medium")
    assert set(medium) == {"blue", "(no team)", "red"}
    # blue = a1 + a2 = 35/45; (no team) = 18/30 = 0.6; 0.6 / (35/45) = 27/35 ≈ 0.771 < 0.8
    assert (medium["blue"].decided, medium["blue"].approved, medium["blue"].ratio) == (45, 35, 1.0)
    assert medium["(no team)"].ratio == pytest.approx(27 / 35)
    assert medium["(no team)"].flagged
    assert not medium["red"].enough_data
    # high: blue alone, 15/40
    high = by_group(rated, "team", "high")
    assert (high["blue"].decided, high["blue"].approved, high["blue"].ratio) == (40, 15, 1.0)


def test_approval_rates_by_action_category(rated) -> None:
    medium = by_group(rated, "category", "medium")
    # write = a1 + a4 (its category from the policy, the snapshot naming none) = 39/44;
    # deploy = 15/20: 0.75 / (39/44) = 33/39 ≈ 0.846; (none) = 0.6 / (39/44) = 26.4/39 ≈ 0.677
    assert (medium["write"].decided, medium["write"].approved) == (44, 39)
    assert medium["deploy"].ratio == pytest.approx(33 / 39)
    assert not medium["deploy"].flagged
    assert medium["(none)"].ratio == pytest.approx(26.4 / 39)
    assert medium["(none)"].flagged
    high = by_group(rated, "category", "high")
    assert (high["deploy"].ratio, high["deploy"].flagged) == (0.5, True)


def test_approval_rates_filter_by_agent_and_team(rated) -> None:
    a3 = Agent.objects.get(team="")
    only = fairness.approval_rates(START, END, agent=a3)
    assert [g.group for g in only.kinds[0].groups] == [a3.name]
    blue = fairness.approval_rates(START, END, team="blue")
    assert [(g.risk_level, g.group) for g in blue.kinds[1].groups] == [
        ("medium", "blue"),
        ("high", "blue"),
    ]


def test_the_minimum_sample_is_the_setting(db, settings) -> None:
    settings.OVERSIGHT_FAIRNESS_MIN_SAMPLE = 5
    boss, a1, a2 = person(), agent(), agent()
    decided(a1, boss, approved=5, rejected=0)
    decided(a2, boss, approved=3, rejected=1)
    medium = by_group(fairness.approval_rates(START, END), "agent", "medium")
    assert medium[a1.name].ratio == 1.0
    assert medium[a2.name].enough_data is False  # 4 of 5
    settings.OVERSIGHT_FAIRNESS_MIN_SAMPLE = 4
    medium = by_group(fairness.approval_rates(START, END), "agent", "medium")
    assert medium[a2.name].ratio == pytest.approx(0.75)
    assert medium[a2.name].flagged


@pytest.mark.django_db
def test_selection_bias_worked_by_hand() -> None:
    write = version("write")
    x, y = person("x"), person("y")
    # the 2x2 table above: X 60 approve / 20 reject, Y 30 / 30: chi² = 28/3 > 4, flagged
    votes(x, approve=60, reject=20, policy_version=write)
    votes(y, approve=30, reject=30, policy_version=write)
    # voided votes do not count (they would change the table)
    votes(y, approve=0, reject=40, policy_version=write, voided=True)
    # other groups: high-risk write votes, and medium votes with no policy
    votes(x, approve=30, reject=0, risk="high", policy_version=write)
    votes(y, approve=10, reject=0)
    # outside the period
    votes(x, approve=0, reject=50, policy_version=write, start=START - timedelta(minutes=1))

    found = fairness.selection_bias(START, END)

    tests = {(t.risk_level, t.category): t for t in found.tests}
    assert list(tests) == [("medium", "(none)"), ("medium", "write"), ("high", "write")]
    test = tests[("medium", "write")]
    assert [(a.name, a.approvals, a.rejections) for a in test.approvers] == [
        (x.username, 60, 20),
        (y.username, 30, 30),
    ]
    assert (test.votes, test.approvals, test.rejections) == (140, 90, 50)
    assert test.chi_square == pytest.approx(28 / 3)
    assert (test.dof, test.threshold, test.flagged) == (1, 4, True)
    assert test.p_value == pytest.approx(math.erfc(math.sqrt(14 / 3)))
    assert found.flagged == (test,)
    # 30 votes by one approver; 10 by another: not enough data, with the counts
    assert tests[("high", "write")].why_not == "1 approver (a comparison needs 2)"
    assert tests[("medium", "(none)")].votes == 10


@pytest.mark.django_db
def test_selection_bias_at_100_votes_and_the_threshold() -> None:
    write = version("write")
    x, y = person("x"), person("y")
    # 100 votes, chi² exactly 4 (worked above): computed, not flagged
    votes(x, approve=2, reject=8, policy_version=write)
    votes(y, approve=48, reject=42, policy_version=write)
    [test] = fairness.selection_bias(START, END).tests
    assert (test.votes, test.chi_square, test.flagged) == (100, pytest.approx(4.0), False)
    # one vote fewer (end excludes the last of y's votes): not enough data
    last = Vote.objects.filter(voter=y).order_by("-created_at").first()
    assert last is not None
    [short] = fairness.selection_bias(START, last.created_at).tests
    assert (short.votes, short.chi_square, short.why_not) == (99, None, "99 of 100 votes")


@pytest.mark.django_db
def test_an_approve_with_changes_counts_as_an_approval() -> None:
    x, y = person("x"), person("y")
    votes(x, approve=50, reject=10)
    votes(y, approve=40, reject=0)
    Vote.objects.filter(voter=x, vote="approve").update(modified_params={"safer": True})
    [test] = fairness.selection_bias(START, END).tests
    assert [(a.approvals, a.rejections) for a in test.approvers] == [(50, 10), (40, 0)]


@pytest.mark.django_db
def test_selection_bias_filtered_by_agent() -> None:
    x, y = person("x"), person("y")
    mine, other = agent("blue"), agent("red")
    votes(x, approve=60, reject=20, for_agent=mine)
    votes(y, approve=30, reject=30, for_agent=other)
    [test] = fairness.selection_bias(START, END, agent=mine).tests
    assert [a.name for a in test.approvers] == [x.username]
    [test] = fairness.selection_bias(START, END, team="red").tests
    assert [a.name for a in test.approvers] == [y.username]


def _figures() -> tuple[fairness.ApprovalRates, fairness.SelectionBias]:
    return fairness.approval_rates(START, END), fairness.selection_bias(START, END)


@pytest.mark.django_db
def test_the_query_count_does_not_grow_with_the_data() -> None:
    write = version("write")
    x, y, boss = person("x"), person("y"), person()
    decided(agent("a"), boss, approved=3, rejected=1, policy_version=write)
    votes(x, approve=2, reject=1, policy_version=write)
    with CaptureQueriesContext(connection) as small:
        _figures()
    for n in range(6):
        decided(agent(f"t{n % 3}"), boss, approved=40, rejected=n, policy_version=version("deploy"))
    votes(x, approve=200, reject=30, policy_version=write, risk="high")
    votes(y, approve=100, reject=90, policy_version=write, risk="high")
    with CaptureQueriesContext(connection) as large:
        rates, bias = _figures()
    assert len(small) == len(large) == 4  # three grouped queries for the rates, one for bias
    assert sum(g.decided for g in rates.kinds[0].groups) == 4 + 6 * 40 + 15
    assert any(t.flagged for t in bias.tests)


def test_the_report_lists_the_flagged_figures_first(rated) -> None:
    x, y = person("x"), person("y")
    votes(x, approve=60, reject=20)
    votes(y, approve=30, reject=30)
    figures = fairness.as_json(rated, fairness.selection_bias(START, END))
    stored = json.loads(json.dumps(figures))  # what the report row keeps
    text = fairness.report_text(stored)

    flagged, _, tables = text.partition("\nApproval rates per risk level")
    assert flagged.startswith("Fairness of decisions, 2026-03-02 to 2026-03-09 (UTC).")
    assert "FLAGGED" in flagged
    assert "- Team: medium   (no team)" in flagged
    assert "18 of 30 approved (60.0 %), ratio 0.77 vs blue  BELOW 0.8" in flagged
    assert "- Selection bias: medium   (none)" in flagged
    assert "chi-square 9.33 (dof 1, p = 0.0023)" in flagged
    assert "not enough data (19 of 20)" in tables
    assert "ABOVE THRESHOLD" in tables
    assert stored["rates"]["kinds"][0]["groups"][0]["decided"] == 25


@pytest.mark.django_db
def test_the_report_says_when_nothing_is_flagged() -> None:
    text = fairness.report_text(fairness.as_json(*_figures()))
    assert "Nothing flagged this period." in text
    assert "no votes" in text


def test_the_partial_marks_flags_in_words_and_hides_thin_figures(rated) -> None:
    x, y = person("x"), person("y")
    votes(x, approve=60, reject=20)
    votes(y, approve=30, reject=30)
    votes(y, approve=5, reject=0, risk="high")
    html = render_to_string(
        "monitoring/_fairness.html",
        {
            "fairness": {"rates": rated, "bias": fairness.selection_bias(START, END)},
            "show_approvers": True,  # as managers see it
        },
    )
    assert 'id="fairness-title"' in html
    assert "<caption>Approval rate by team, per risk level</caption>" in html
    assert '<th scope="row" data-label="Team" class="text">(no team)</th>' in html
    # flagged in text, with the counts behind it
    assert '<span class="badge danger">below 0.8</span>' in html
    assert "18 of 30 approved (60.0 %), ratio 0.77 against blue (77.8 %)" in html
    assert '<span class="badge danger">above threshold</span>' in html
    assert "not enough data (19 of 20)" in html
    assert "not enough data (1 approver (a comparison needs 2))" in html
    assert f"{x.username}: 60 approve, 20 reject" in html


@pytest.mark.django_db
def test_the_partial_without_data_says_so() -> None:
    rates, bias = _figures()
    html = render_to_string(
        "monitoring/_fairness.html", {"fairness": {"rates": rates, "bias": bias}}
    )
    assert "No request was decided by a person in this period." in html
    assert "No votes in this period." in html
    assert "Flagged" not in html
