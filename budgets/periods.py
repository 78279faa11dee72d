"""Budget period windows in the configured time zone (OVERSIGHT_BUDGET_TIME_ZONE).

A window runs from a local boundary (the hour, midnight, Monday midnight, the 1st at midnight)
to the next one. Boundaries are computed on the local wall clock and converted to instants, so
on a DST change a day is 23 or 25 hours long, as people there would expect.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings

from budgets.models import Period


class Window(NamedTuple):
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def budget_zone() -> ZoneInfo:
    return ZoneInfo(settings.OVERSIGHT_BUDGET_TIME_ZONE)


def window_for(period: str, at: datetime, zone: ZoneInfo | None = None) -> Window:
    """The window of `period` that contains the instant `at`."""
    zone = zone or budget_zone()
    local = at.astimezone(zone)
    if period == Period.HOURLY:
        # Replacing minutes keeps the `fold`, so the repeated hour of a fall-back is its own
        # window; one hour later on the absolute clock is the next boundary.
        start = local.replace(minute=0, second=0, microsecond=0)
        return Window(_utc(start), _utc(start) + timedelta(hours=1))
    day = local.date()
    if period == Period.DAILY:
        first, following = day, day + timedelta(days=1)
    elif period == Period.WEEKLY:
        first = day - timedelta(days=day.weekday())
        following = first + timedelta(days=7)
    elif period == Period.MONTHLY:
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"Unknown period {period!r}.")
    return Window(_midnight(first, zone), _midnight(following, zone))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    local = datetime(day.year, day.month, day.day, tzinfo=zone)
    # Where midnight does not exist (a DST jump at 00:00), the round trip lands on the first
    # instant after the gap.
    return _utc(local)


def _utc(local: datetime) -> datetime:
    return local.astimezone(UTC)
