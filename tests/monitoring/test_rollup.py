"""Finished days rolled up (`monitoring.rollup`): the page's figures are the same from the
rollup as from the records, a day is read from its rollup only once that is final, and beat
rolls up the days that need it, a week at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from monitoring import health, rollup
from monitoring.models import AgentDay, RolledDay
from tests.monitoring.test_alerts import spend
from tests.monitoring.test_health import at, outcome

pytestmark = pytest.mark.django_db

TODAY = date(2026, 12, 7)
NOW = datetime(2026, 12, 7, 9, tzinfo=UTC)


def history(make_agent) -> None:
    for n, agent in enumerate([make_agent().agent, make_agent().agent]):
        for back in range(20):
            day = TODAY - timedelta(days=back)
            for k in range(back % 4 + n):
                outcome(agent, day, success=k % 3 != 0, error="boom" if k == 3 else "")
            spend(agent, str(back + 1), at(day))


def test_the_figures_are_the_same_from_the_rollup_as_from_the_records(make_agent):
    history(make_agent)
    from_records = health.health(TODAY, 14)

    rollup.roll(TODAY - timedelta(days=40), TODAY - timedelta(days=1), now=NOW)

    # Yesterday's requests may still wait: its rollup is not final yet (`health.SETTLE`).
    assert health.final_days(TODAY - timedelta(days=40), TODAY) == {
        TODAY - timedelta(days=n) for n in range(2, 41)
    }
    assert health.health(TODAY, 14) == from_records
    assert AgentDay.objects.filter(day=TODAY).count() == 0  # today is always live


def test_a_rollup_made_before_its_day_settled_is_not_read(make_agent):
    history(make_agent)
    yesterday = TODAY - timedelta(days=1)
    rollup.roll(yesterday, yesterday, now=at(yesterday, 23))
    AgentDay.objects.update(outcomes=999)  # were it read, the figures would show it

    assert yesterday not in health.final_days(yesterday, yesterday)
    assert health.health(TODAY, 2).overall[0].outcomes < 999


def test_beat_rolls_up_the_newest_settled_days_a_week_at_a_time(make_agent):
    history(make_agent)
    rollup.roll(TODAY - timedelta(days=4), TODAY - timedelta(days=4), now=NOW)

    # 00:03 on the 7th: a day settles 24 h 05 min after it ends, so the 4th is the newest
    # settled; the 3rd is final already: the 4th and the six days before the 3rd are rolled up.
    early = rollup.roll_pending(now=datetime(2026, 12, 7, 0, 3, tzinfo=UTC))
    assert early == [TODAY - timedelta(days=n) for n in (3, 5, 6, 7, 8, 9, 10)]

    # 09:00: the 5th has settled too.
    later = rollup.roll_pending(now=NOW)
    assert later == [TODAY - timedelta(days=n) for n in (2, 11, 12, 13, 14, 15, 16)]
    assert RolledDay.objects.count() == 1 + 7 + 7
