"""The budgets page (managers, admins): spend vs limit per budget in its current period, burn
rate and projection, spend by agent, model and day with a chart, the seed's hints, and the
alerts, which refresh themselves (htmx polling) so a new alert shows up without a reload."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from budgets import periods, selectors

CHART_DAYS = 30
CHART_WIDTH = 720
CHART_HEIGHT = 160


@dataclass(frozen=True)
class Bar:
    day: date
    cents: Decimal
    x: int
    y: int
    width: int
    height: int


def daily_bars(by_day: list[dict[str, Any]], today: date) -> list[Bar]:
    """One bar per day of the chart (empty days included), scaled to the busiest day. The
    geometry goes into SVG attributes: the CSP forbids inline styles, not attributes."""
    spent = {row["day"]: row["cents"] for row in by_day}
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    top = max((spent.get(day, Decimal(0)) for day in days), default=Decimal(0)) or Decimal(1)
    slot = CHART_WIDTH // CHART_DAYS
    bars = []
    for index, day in enumerate(days):
        cents = spent.get(day) or Decimal(0)
        height = int(cents * (CHART_HEIGHT - 10) / top)
        bars.append(Bar(day, cents, index * slot + 2, CHART_HEIGHT - height, slot - 4, height))
    return bars


@require_safe
@role_required(Role.MANAGER, Role.ADMIN)
def overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "budget-alerts":
        return render(
            request, "budgets/overview.html#alerts", {"alerts": selectors.recent_alerts()}
        )
    now = timezone.now()
    spend = selectors.spending(days=CHART_DAYS, now=now)
    context = {
        "rows": selectors.budget_rows(now),
        "spend": spend,
        "hints": selectors.hints(spend),
        "alerts": selectors.recent_alerts(),
        "bars": daily_bars(spend.by_day, now.astimezone(periods.budget_zone()).date()),
        "chart_width": CHART_WIDTH,
        "chart_height": CHART_HEIGHT,
        "zone": periods.budget_zone().key,
    }
    return render(request, "budgets/overview.html", context)
