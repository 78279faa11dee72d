"""Oversight of the overseers (SPEC §12): per approver, decisions, approval rate, median time
to decide and the rubber-stamp signals, each rule tested on both sides of its threshold."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from approvals.models import ApprovalRequest, Status, Vote
from monitoring.overseers import Overseer, overseers
from tests.monitoring.test_fairness import DURING, END, START, agent, person, request_row

pytestmark = pytest.mark.django_db

RISKS = ["low", "medium", "high", "critical"]


def cast(
    voter: User,
    plan: list[tuple[str, float]],
    *,
    risks: list[str] | None = None,
    justification: str = "",
    voided: bool = False,
    first_at: datetime = DURING,
) -> None:
    """One request per (vote, seconds after the request was created) in `plan`, in that order a
    minute apart, with the risk levels taken in turn from `risks`; each request's size is
    len("{}") + len(justification)."""
    owner = agent()
    levels = risks or ["medium"]
    rows = []
    for n in range(len(plan)):
        created = first_at + timedelta(minutes=n)
        rows.append(
            request_row(
                owner,
                status=Status.PENDING,
                risk=levels[n % len(levels)],
                created_at=created,
                justification=justification,
            )
        )
    ApprovalRequest.objects.bulk_create(rows)
    Vote.objects.bulk_create(
        [
            Vote(
                request=row,
                voter=voter,
                voter_name=voter.username,
                vote=choice,
                params_sha256="0" * 64,
                voided_at=DURING if voided else None,
                created_at=row.created_at + timedelta(seconds=after),
            )
            for row, (choice, after) in zip(rows, plan, strict=True)
        ]
    )


def approvals(count: int, after: float = 600.0) -> list[tuple[str, float]]:
    return [("approve", after)] * count


def find(voter: User) -> Overseer:
    return next(o for o in overseers(START, END) if o.voter_id == voter.pk)


def test_decisions_rate_and_median_time_to_decide() -> None:
    odd, even = person("odd"), person("even")
    # delays 10 s, 30 s, 20 s: median 20 s
    cast(odd, [("approve", 10), ("reject", 30), ("approve", 20)])
    # delays 10, 20, 30, 100 s: median (20 + 30) / 2 = 25 s
    cast(even, [("approve", 100), ("approve", 20), ("reject", 10), ("reject", 30)])
    # not counted: a voided vote, and a vote after the period
    cast(odd, [("reject", 1)], voided=True)
    cast(odd, [("reject", 1)], first_at=END)

    found = {o.voter_id: o for o in overseers(START, END)}

    assert set(found) == {odd.pk, even.pk}
    first = found[odd.pk]
    assert (first.decisions, first.approvals, first.rejections) == (3, 2, 1)
    assert first.approval_rate == pytest.approx(2 / 3)
    assert first.median_seconds == pytest.approx(20, abs=0.01)  # SQLite: to the millisecond
    second = found[even.pk]
    assert (second.decisions, second.approvals, second.approval_rate) == (4, 2, 0.5)
    assert second.median_seconds == pytest.approx(25, abs=0.01)


def test_an_approval_faster_than_the_reading_time_is_fast() -> None:
    # size = len("{}") + 98 = 100 characters: reading time 3 s + 100 / 25 s = 7 s
    voter = person()
    cast(voter, [("approve", 6.5), ("approve", 7.5), ("reject", 1)], justification="j" * 98)
    # an empty justification: 3 s + 2 / 25 s = 3.08 s
    cast(voter, [("approve", 3.0), ("approve", 3.2)])
    found = find(voter)
    # 6.5 s and 3.0 s are fast; 7.5 s and 3.2 s are not; a fast rejection is no rubber stamp
    assert (found.fast_approvals, found.approvals) == (2, 4)
    assert found.fast_share == 0.5


@pytest.mark.parametrize(
    ("fast", "slow", "signal"),
    [
        (5, 15, True),  # 5 of 20 = 25 %
        (5, 16, False),  # 5 of 21 ≈ 23.8 %: under a quarter
        (4, 6, False),  # 4 of 10 = 40 %, but fewer than 5
        (6, 0, True),
    ],
)
def test_the_fast_approval_signal(fast, slow, signal) -> None:
    voter = person()
    cast(voter, approvals(fast, after=1) + approvals(slow, after=600))
    found = find(voter)
    assert (found.fast_approvals, found.fast_signal) == (fast, signal)
    assert bool(found.signals) == signal


@pytest.mark.parametrize(
    ("plan", "risks", "streak", "levels", "signal"),
    [
        # 20 approvals in a row over low, medium, high: raised
        (approvals(20), RISKS[:3], 20, 3, True),
        # 19 in a row, a rejection, 19 more: no run of 20
        ([*approvals(19), ("reject", 600), *approvals(19)], RISKS[:3], 19, 3, False),
        # 30 in a row but over two risk levels only
        (approvals(30), RISKS[:2], 30, 2, False),
        # a rejection first, then 20 over all four levels
        ([("reject", 600), *approvals(20)], RISKS, 20, 4, True),
    ],
)
def test_the_approval_streak_signal(plan, risks, streak, levels, signal) -> None:
    voter = person()
    cast(voter, plan, risks=risks)
    found = find(voter)
    assert (found.longest_streak, found.streak_risk_levels, found.streak_signal) == (
        streak,
        levels,
        signal,
    )


def test_the_streak_shown_is_one_that_raises_the_signal() -> None:
    voter = person()
    # 25 in a row over one level, a rejection, then 21 over three levels: the second is shown
    plan = [*approvals(25), ("reject", 600), *approvals(21)]
    risks = ["medium"] * 26 + ["low", "medium", "high"] * 7
    cast(voter, plan, risks=risks)
    found = find(voter)
    assert (found.longest_streak, found.streak_risk_levels, found.flagged_streaks) == (21, 3, 1)


def test_a_voter_with_no_approval_has_no_streak() -> None:
    voter = person()
    cast(voter, [("reject", 60)] * 3)
    found = find(voter)
    assert (found.longest_streak, found.streak_risk_levels, found.approval_rate) == (0, 0, 0.0)
    assert found.median_seconds == pytest.approx(60, abs=0.01)


def test_the_most_signals_come_first() -> None:
    careful, hasty, stamper = person("a-careful"), person("b-hasty"), person("c-stamper")
    cast(careful, [*approvals(3), ("reject", 600)])
    cast(hasty, approvals(6, after=1))  # fast only
    cast(stamper, approvals(20, after=1), risks=RISKS)  # fast and a streak
    assert [o.voter_id for o in overseers(START, END)] == [stamper.pk, hasty.pk, careful.pk]
    assert len(find(stamper).signals) == 2


def test_the_query_count_does_not_grow_with_the_data() -> None:
    cast(person(), [*approvals(2), ("reject", 600)])
    with CaptureQueriesContext(connection) as small:
        overseers(START, END)
    for n in range(5):
        cast(person(), approvals(30 + n, after=1) + [("reject", 60)] * n, risks=RISKS)
    with CaptureQueriesContext(connection) as large:
        found = overseers(START, END)
    assert len(small) == len(large) == 3
    assert len(found) == 6


def test_the_partial_shows_the_signals_in_words() -> None:
    careful, stamper = person("a-careful"), person("c-stamper")
    cast(careful, [*approvals(3, after=90), ("reject", 600)])
    cast(stamper, approvals(20, after=1), risks=RISKS)
    html = render_to_string("monitoring/_overseers.html", {"overseers": overseers(START, END)})
    assert 'id="overseers-title"' in html
    assert f'<th scope="row" data-label="Approver" class="text">{stamper.username}</th>' in html
    assert "20 of 20 approvals faster than the reading time" in html
    assert "20 approvals in a row across 4 risk levels" in html
    assert '<span class="badge warn">too fast</span>' in html
    assert "3 s plus 1 s per 25 characters" in html
    assert "1m 30s" in html  # the careful one's median: 90 s
    assert html.index(stamper.username) < html.index(careful.username)


def test_the_partial_with_nobody_voting() -> None:
    html = render_to_string("monitoring/_overseers.html", {"overseers": []})
    assert "Nobody voted in this period." in html
