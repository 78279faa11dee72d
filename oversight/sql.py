"""SQL the ORM does not spell portably, the same on PostgreSQL and SQLite: seconds between two
timestamps, and percentiles by hand (SQLite has no percentile_cont)."""

from __future__ import annotations

from typing import Any

from django.db.models import FloatField, Func

# Seconds from `created_at` to `decided_at` of a row, as raw SQL for each database.
DECISION_SECONDS = {
    "postgresql": "EXTRACT(EPOCH FROM decided_at - created_at)",
    "sqlite": "(julianday(decided_at) - julianday(created_at)) * 86400.0",
}


def percentile(percent: int) -> str:
    """SQL for percentile_cont(percent/100) of `seconds` over a group whose rows carry their
    0-based rank `i` (ROW_NUMBER() OVER (... ORDER BY seconds) - 1) and the group's size `n`:
    the value at x = p*(n-1), interpolated between floor(x) and floor(x)+1 (integer arithmetic
    keeps floor() and the fraction exact on both databases). For a cursor's SQL: `%` is
    escaped."""
    low = f"({percent} * (n - 1) / 100)"
    fraction = f"(({percent} * (n - 1) %% 100) / 100.0)"
    return (
        f"SUM(CASE WHEN i = {low} THEN seconds * (1 - {fraction}) "
        f"WHEN i = {low} + 1 THEN seconds * {fraction} ELSE 0 END)"
    )


class EpochSeconds(Func):
    """Seconds since 1970 of a timestamp, as a float, on PostgreSQL and SQLite (which stores a
    timestamp as UTC text; julianday keeps its fraction of a second)."""

    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float", **extra
        )

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)",
            **extra,
        )
