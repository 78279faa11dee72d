"""Period windows: hour, day, week and month rollover, and DST in the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from budgets.models import BudgetWindow
from budgets.periods import window_for
from tests.budgets.helpers import report

BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
TICK = timedelta(microseconds=1)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "inside", "start", "end"),
    [
        ("hourly", at(2026, 5, 6, 13, 59, 59), at(2026, 5, 6, 13), at(2026, 5, 6, 14)),
        ("daily", at(2026, 5, 6, 23, 59), at(2026, 5, 6), at(2026, 5, 7)),
        # 2026-05-06 is a Wednesday: weeks start on Monday.
        ("weekly", at(2026, 5, 6, 12), at(2026, 5, 4), at(2026, 5, 11)),
        ("monthly", at(2026, 2, 28, 23), at(2026, 2, 1), at(2026, 3, 1)),
        ("monthly", at(2026, 12, 31, 23), at(2026, 12, 1), at(2027, 1, 1)),
    ],
)
def test_window_contains_the_instant_and_the_next_one_starts_at_its_end(period, inside, start, end):
    window = window_for(period, inside, UTC_ZONE)
    assert (window.start, window.end) == (start, end)
    assert window_for(period, end - TICK, UTC_ZONE).start == start
    following = window_for(period, end, UTC_ZONE)
    assert following.start == end
    assert following.end > end


def test_a_daily_window_is_23_hours_on_the_spring_dst_day_and_25_in_autumn():
    spring = window_for("daily", at(2026, 3, 29, 12), BERLIN)
    assert spring.start == at(2026, 3, 28, 23)  # midnight CET
    assert spring.end == at(2026, 3, 29, 22)  # midnight CEST
    assert spring.hours == 23
    autumn = window_for("daily", at(2026, 10, 25, 12), BERLIN)
    assert autumn.start == at(2026, 10, 24, 22)
    assert autumn.end == at(2026, 10, 25, 23)
    assert autumn.hours == 25


def test_hourly_windows_across_the_autumn_change_keep_the_repeated_hour_apart():
    # 02:00-03:00 happens twice on 2026-10-25 in Berlin: 00:00-01:00 and 01:00-02:00 UTC.
    first = window_for("hourly", at(2026, 10, 25, 0, 30), BERLIN)
    second = window_for("hourly", at(2026, 10, 25, 1, 30), BERLIN)
    assert (first.start, first.end) == (at(2026, 10, 25, 0), at(2026, 10, 25, 1))
    assert (second.start, second.end) == (at(2026, 10, 25, 1), at(2026, 10, 25, 2))
    # Spring: 01:00 CET is followed directly by 03:00 CEST; the windows stay contiguous.
    before = window_for("hourly", at(2026, 3, 29, 0, 59), BERLIN)
    after = window_for("hourly", at(2026, 3, 29, 1, 0), BERLIN)
    assert before.end == after.start == at(2026, 3, 29, 1)


def test_weekly_and_monthly_windows_span_a_dst_change_by_the_local_clock():
    march = window_for("monthly", at(2026, 3, 15), BERLIN)
    assert march.start == at(2026, 2, 28, 23)
    assert march.end == at(2026, 3, 31, 22)
    assert march.hours == 31 * 24 - 1
    week = window_for("weekly", at(2026, 10, 25, 12), BERLIN)  # a Sunday
    assert week.start == at(2026, 10, 18, 22)
    assert week.hours == 7 * 24 + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("period", "boundary"),
    [
        ("hourly", at(2026, 5, 6, 14)),
        ("daily", at(2026, 5, 7)),
        ("weekly", at(2026, 5, 11)),
        ("monthly", at(2026, 6, 1)),
    ],
)
def test_spend_rolls_over_into_a_new_window_and_the_old_one_keeps_its_total(
    make_agent, make_budget, period, boundary
):
    agent = make_agent().agent
    budget = make_budget(period=period, limit_cents=100)
    report(agent, occurred_at=boundary - TICK)
    report(agent, occurred_at=boundary - TICK)
    outcome = report(agent, occurred_at=boundary)
    (state,) = outcome.budgets
    assert state.window.start == boundary
    assert state.spent_cents == Decimal(3)
    windows = BudgetWindow.objects.filter(budget=budget).order_by("window_start")
    assert [(w.window_end, w.spent_cents, w.calls) for w in windows] == [
        (boundary, Decimal(6), 2),
        (window_for(period, boundary, UTC_ZONE).end, Decimal(3), 1),
    ]


@pytest.mark.django_db
def test_the_configured_zone_decides_where_a_day_ends(make_agent, make_budget, settings):
    settings.OVERSIGHT_BUDGET_TIME_ZONE = "Europe/Berlin"
    agent = make_agent().agent
    make_budget(period="daily", limit_cents=100)
    # 22:30 UTC on the autumn DST day is 23:30 in Berlin: still the 25-hour Sunday.
    late = report(agent, occurred_at=at(2026, 10, 25, 22, 30))
    next_day = report(agent, occurred_at=at(2026, 10, 25, 23, 0))
    assert late.budgets[0].window.start == at(2026, 10, 24, 22)
    assert late.budgets[0].window.hours == 25
    assert next_day.budgets[0].window.start == at(2026, 10, 25, 23)
    assert next_day.budgets[0].spent_cents == Decimal(3)
