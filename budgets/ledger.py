"""Atomic arithmetic on budget windows: the database adds, Python never reads-modifies-writes.

Each function changes one (budget, window) row with a single UPDATE, which holds that row's
lock until the caller's transaction commits, so concurrent changes to one window queue up and
none is lost. A window row is created on first use (`INSERT ... ON CONFLICT DO NOTHING`).
Callers touch windows in budget-id order, and before any audit append, so two transactions
never wait on each other in a cycle.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import F
from django.db.models.functions import Round

from budgets.models import COST_PLACES, Budget, BudgetWindow
from budgets.periods import Window
from budgets.pricing import QUANTUM

_TABLE = BudgetWindow._meta.db_table
# Sums are rounded to the columns' places in the database. PostgreSQL's numeric adds exactly, so
# there it changes nothing; SQLite keeps decimals as binary floats and adds them as such
# (100.1 + 20.8 = 120.89999999999999), so there it keeps each total the nearest float to the
# exact decimal instead of letting the error grow report by report, and lets a total that is
# exactly at a limit compare as exactly at it.
_P = COST_PLACES
# The largest total the columns hold (24 digits, 8 after the point). A window's spend stops
# there instead of failing every later report (with a 500, the cost lost): whatever the limit,
# a budget is spent long before, and each report's own cost stays exact in its record.
SPENT_CAP = "9999999999999999.99999999"
_ADD = (
    f"UPDATE {_TABLE} SET spent_cents = CASE WHEN spent_cents + %s >= {SPENT_CAP} "  # noqa: S608
    f"THEN {SPENT_CAP} ELSE ROUND(spent_cents + %s, {_P}) END, "
    f"reserved_cents = ROUND(reserved_cents - %s, {_P}), calls = calls + 1 "
    "WHERE budget_id = %s AND window_start = %s "
    "RETURNING id, spent_cents, reserved_cents"
)


_ENSURE = (
    f"INSERT INTO {_TABLE} (budget_id, window_start, window_end, spent_cents, reserved_cents, "  # noqa: S608
    f"raised_cents, calls) SELECT id, %s, %s, 0, 0, 0, 0 FROM {Budget._meta.db_table} "
    "WHERE id = %s ON CONFLICT (budget_id, window_start) DO NOTHING"
)


def _at(moment: datetime) -> Any:
    """A datetime as the ORM writes it to this database, so that rows written here are found
    by ORM lookups (SQLite keeps datetimes as text in Django's own format)."""
    return connection.ops.adapt_datetimefield_value(moment)


def ensure(budget_id: int, window: Window) -> None:
    """Create the window row unless it exists, or the budget was deleted meanwhile (another
    process may still have it cached for a few seconds)."""
    with connection.cursor() as cursor:
        cursor.execute(_ENSURE, [_at(window.start), _at(window.end), budget_id])


def add_spend(
    budget_id: int, window: Window, cost: Decimal, released: Decimal = Decimal(0)
) -> tuple[int, Decimal, Decimal] | None:
    """Add one call's cost (and give back a released reservation); return the window's id and
    its new spent and reserved totals, which include every change committed before ours.
    None when the budget no longer exists."""
    params = [cost, cost, released, budget_id, _at(window.start)]
    row = _update_window(_ADD, params, budget_id, window)
    if row is None:
        return None
    window_id, spent, reserved = row
    return int(window_id), cents(spent), cents(reserved)


def cents(value: Decimal | float | int) -> Decimal:
    """A total as the database hands it back, as the ORM would read it: Decimal cents to the
    column's places (PostgreSQL gives a Decimal; SQLite an int or a float, whose shortest
    repr is the decimal it was rounded from)."""
    return Decimal(str(value)).quantize(QUANTUM)


def try_reserve(budget_id: int, window: Window, limit_cents: int, amount: Decimal) -> int | None:
    """Hold `amount` (> 0) in the window if spent + reserved + amount stays within the limit
    (and what approvals raised it by). Returns the window's id, or None when the budget cannot
    take it."""
    sql = (
        f"UPDATE {_TABLE} SET reserved_cents = ROUND(reserved_cents + %s, {_P}) "  # noqa: S608
        "WHERE budget_id = %s AND window_start = %s "
        f"AND ROUND(spent_cents + reserved_cents + %s, {_P}) <= %s + raised_cents "
        "RETURNING id"
    )
    params: list[Any] = [amount, budget_id, _at(window.start), amount, limit_cents]
    row = _update_window(sql, params, budget_id, window)
    return None if row is None else int(row[0])


def _update_window(sql: str, params: list[Any], budget_id: int, window: Window) -> Any:
    """Run an `UPDATE ... RETURNING` on the window's row, creating the row first if the
    update found none; the returned row, or None (no budget any more, or a condition unmet)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            ensure(budget_id, window)
            cursor.execute(sql, params)
            row = cursor.fetchone()
    return row


def raise_cap(
    budget_id: int, window: Window, amount: Decimal, *, hold: Decimal = Decimal(0)
) -> tuple[int, Decimal] | None:
    """Add `amount` to what the window's limit was raised by (a person approved spending past
    it, SPEC §5 ask mode) and hold `hold` of it for the approved request, in one UPDATE; the
    window's id and new raise, or None when the budget no longer exists."""
    sql = (
        f"UPDATE {_TABLE} SET raised_cents = ROUND(raised_cents + %s, {_P}), "  # noqa: S608
        f"reserved_cents = ROUND(reserved_cents + %s, {_P}) "
        "WHERE budget_id = %s AND window_start = %s RETURNING id, raised_cents"
    )
    params = [amount, hold, budget_id, _at(window.start)]
    row = _update_window(sql, params, budget_id, window)
    return None if row is None else (int(row[0]), cents(row[1]))


def give_back(window_id: int, amount: Decimal) -> None:
    BudgetWindow.objects.filter(pk=window_id).update(
        reserved_cents=Round(F("reserved_cents") - amount, COST_PLACES)
    )
