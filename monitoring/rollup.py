"""Finished days, rolled up (SPEC §10.4): each agent's figures of a UTC day, once the day is
over, so that the monitoring page reads a few thousand rows instead of aggregating a million
outcomes again on every cold load.

Beat (`roll_pending`, every five minutes) rolls up each day of the last 104 (the longest
period, 90 days, and its 14-day baseline) that has no final rollup: a day as soon as it
settled, older days a week at a time. A rollup is final when it was made `health.SETTLE` (a
request's longest wait, and five minutes) after its day ended, when nothing counted for the
day can change any more; the page aggregates every day from the oldest one that is not final
to today from the records themselves (`monitoring.health.health`), so it is right before beat
ran, only slower. Records written later for a day that is final already (an import, the demo's
history) appear after that day is rolled up again: `roll(first, last)`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from monitoring import health
from monitoring.models import AgentDay, RolledDay

KEEP_DAYS = 90 + health.BASELINE_DAYS
# The PostgreSQL advisory lock rolls take turns on: the bytes "ovs-roll" as a signed 64-bit
# integer.
ROLL_LOCK_KEY = 8_031_733_624_492_485_740
PER_RUN = 7


@transaction.atomic
def roll(first: date, last: date, *, now: datetime | None = None) -> int:
    """Compute the rollup of the days [first, last] (seven grouped queries) and replace what was
    there; the number of (agent, day) rows written."""
    now = now or timezone.now()
    if connection.vendor == "postgresql":  # two rolls at once (a slow beat run and the next)
        with connection.cursor() as cursor:  # take turns; SQLite's one writer does already
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ROLL_LOCK_KEY])
    counts = health.aggregate(_midnight(first), _midnight(last + timedelta(days=1)), None)
    AgentDay.objects.filter(day__gte=first, day__lte=last).delete()
    AgentDay.objects.bulk_create(
        AgentDay(agent_id=agent_id, day=day, **figures)
        for (agent_id, day), figures in counts.items()
    )
    RolledDay.objects.bulk_create(
        [
            RolledDay(day=first + timedelta(days=n), rolled_at=now)
            for n in range((last - first).days + 1)
        ],
        update_conflicts=True,
        unique_fields=["day"],
        update_fields=["rolled_at"],
    )
    return len(counts)


def roll_pending(*, now: datetime | None = None) -> list[date]:
    """Beat: roll up the newest days without a final rollup, at most `PER_RUN` of them (in
    runs of consecutive days); the days rolled up."""
    now = now or timezone.now()
    yesterday = now.astimezone(UTC).date() - timedelta(days=1)
    oldest = yesterday - timedelta(days=KEEP_DAYS - 1)
    final = health.final_days(oldest, yesterday)
    due = [yesterday - timedelta(days=n) for n in range(KEEP_DAYS)]
    due = [day for day in due if day not in final and _settled(day, now)][:PER_RUN]
    for first, last in _runs(sorted(due)):
        roll(first, last, now=now)
    return due


def _settled(day: date, now: datetime) -> bool:
    return now >= _midnight(day + timedelta(days=1)) + health.SETTLE


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) pairs."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)
