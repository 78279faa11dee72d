"""The monitoring page (SPEC §12): agent health per day with its thresholds, the alerts, the
fairness of decisions and, for managers only, the oversight of the overseers.

Every figure comes from grouped SQL (`monitoring.health`, `.fairness`, `.overseers`); a set of
figures is kept in this process's cache for OVERSIGHT_MONITORING_CACHE_SECONDS, keyed by the
filters and the day."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_safe

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from agents.models import Agent
from monitoring import charts, fairness, health, overseers
from monitoring.forms import MonitoringFilterForm
from monitoring.models import AlertState, MonitorAlert
from oversight.text import duration

READERS = (Role.MANAGER, Role.COMPLIANCE)
HISTORY = 30


def _pct(value: float) -> str:
    return f"{value * 100:.1f} %".replace(".0 %", " %")


def _drift(value: float) -> str:
    return f"{value * 100:+.0f} %"


@dataclass(frozen=True)
class MetricSpec:
    key: str
    title: str
    rule: str
    value: Callable[[health.Day], float | None]
    show: Callable[[float], str]
    threshold: float | None = None
    # Which side of the threshold is a breach: "above", "below", "at_least", "outside".
    breach: str = ""
    # The per-agent table's heading, when it differs from the title.
    column: str = ""
    # How a bar's value reads in the chart.
    chart_label: str = "{:.0%}"

    def breached(self, value: float | None) -> bool:
        if value is None or self.threshold is None:
            return False
        return {
            "above": value > self.threshold,
            "below": value < self.threshold,
            "at_least": value >= self.threshold,
            "outside": abs(value) > self.threshold,
        }[self.breach]


METRICS = (
    MetricSpec("success", "Success rate", "above 90 %", lambda d: d.success_rate, _pct,
               health.SUCCESS_RATE_MIN, "below"),
    MetricSpec("errors", "Error rate", "below 5 %", lambda d: d.error_rate, _pct,
               health.ERROR_RATE_MAX, "above"),
    MetricSpec("cost", "Cost per task today vs 14-day baseline", "within ±10 %",
               lambda d: d.cost_drift, _drift, health.COST_DRIFT_MAX, "outside",
               "Cost per task (vs the 14 days before)", "{:.2f}¢"),
    MetricSpec("violations", "Guardrail violations", "fewer than 5 a day",
               lambda d: d.violations, "{:.0f}".format, health.VIOLATIONS_PER_DAY_MAX, "at_least",
               chart_label="{:.0f}"),
    MetricSpec("interventions", "Human interventions", "tracked: approvals, rejections, changes",
               lambda d: d.interventions, "{:.0f}".format, chart_label="{:.0f}"),
    MetricSpec("escalations", "Escalation rate", "warns above 30 %", lambda d: d.escalation_rate,
               _pct, health.ESCALATION_RATE_WARN, "above"),
    MetricSpec("resolution", "Escalation resolution time", "tracked: escalation to decision",
               lambda d: d.resolution_time, duration, chart_label="{:.0f}s"),
    MetricSpec("overrides", "Override rate", "tracked: rejected or changed of decided",
               lambda d: d.override_rate, _pct),
    MetricSpec("transitions", "Autonomy transitions", "tracked", lambda d: d.transitions,
               "{:.0f}".format, chart_label="{:.0f}"),
)  # fmt: skip


@dataclass(frozen=True)
class Filters:
    agent: Agent | None
    team: str
    days: int

    def key(self, part: str) -> str:
        today = timezone.now().astimezone(UTC).date()
        agent = self.agent.pk if self.agent else ""
        return f"monitoring:{part}:{today}:{self.days}:{agent}:{self.team}"

    def period(self) -> tuple[datetime, datetime]:
        """[start, end) in UTC: the `days` days up to and including today."""
        today = timezone.now().astimezone(UTC).date()
        end = datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC)
        return end - timedelta(days=self.days), end


def _filters(request: AuthenticatedHttpRequest) -> tuple[MonitoringFilterForm, Filters]:
    teams = sorted(set(Agent.objects.exclude(team="").values_list("team", flat=True)))
    form = MonitoringFilterForm(request.GET or None, teams=teams, initial={"days": 30})
    data: dict[str, Any] = {}
    if form.is_bound:
        # cleaned_data keeps the fields that validate: a bad filter is left out (the form says
        # why under it) and the others still apply.
        form.is_valid()
        data = form.cleaned_data
    return form, Filters(data.get("agent"), data.get("team") or "", data.get("days") or 30)


def _cached[T](key: str, compute: Callable[[], T]) -> T:
    """`compute()`, kept in this process's cache for OVERSIGHT_MONITORING_CACHE_SECONDS."""
    found = cache.get(key)
    if found is None:
        found = compute()
        cache.set(key, found, settings.OVERSIGHT_MONITORING_CACHE_SECONDS)
    return found


@require_safe
@role_required(*READERS)
def page(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The health figures and the alerts; the fairness and overseers sections load into it
    (`fairness_section`, `overseers_section`), each computed and cached on its own."""
    form, filters = _filters(request)
    # Kept rendered: the charts and the per-agent table are most of a cached load's work (128
    # agents at scale: a cached load took 73-106 ms with the figures kept, 21-23 ms rendered).
    figures = _cached(filters.key("health"), lambda: _health(filters))
    alerts = list(MonitorAlert.objects.select_related("agent")[:HISTORY])
    context = {
        "form": form,
        "days": filters.days,
        "agent": filters.agent,
        "team": filters.team,
        "health_html": figures["html"],
        "managers": request.user.has_role(Role.MANAGER),
        "query": request.GET.urlencode(),
        "firing": [alert for alert in alerts if alert.state == AlertState.FIRING],
        "alerts": alerts,
        "computed_at": figures["computed_at"],
        "cache_seconds": settings.OVERSIGHT_MONITORING_CACHE_SECONDS,
    }
    with timezone.override(UTC):  # the page's times are labelled UTC, as its days are
        return render(request, "monitoring/page.html", context)


@require_safe
@role_required(*READERS)
def fairness_section(request: AuthenticatedHttpRequest) -> HttpResponse:
    _, filters = _filters(request)
    start, end = filters.period()
    team = filters.team or None
    figures = _cached(
        filters.key("fairness"),
        lambda: {
            "rates": fairness.approval_rates(start, end, agent=filters.agent, team=team),
            "bias": fairness.selection_bias(start, end, agent=filters.agent, team=team),
        },
    )
    # Each approver's votes are their record: shown to managers only, never to peers (SPEC §12).
    show_approvers = request.user.has_role(Role.MANAGER)
    context = {"fairness": figures, "show_approvers": show_approvers}
    return _section(request, "monitoring/_fairness.html", context)


@require_safe
@role_required(Role.MANAGER)
def overseers_section(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Managers only: the approvers' records are not shown to peers, nor to compliance."""
    _, filters = _filters(request)
    start, end = filters.period()
    found = _cached(filters.key("overseers"), lambda: overseers.overseers(start, end))
    return _section(request, "monitoring/_overseers.html", {"overseers": found})


def _section(request: AuthenticatedHttpRequest, part: str, context: dict[str, Any]) -> HttpResponse:
    """The section alone into the page (htmx), or as a page of its own (a link followed)."""
    with timezone.override(UTC):
        if request.htmx:
            return render(request, part, context)
        return render(request, "monitoring/section.html", {**context, "part": part})


def _health(filters: Filters) -> dict[str, Any]:
    if filters.agent is not None:
        ids: list[int] | None = [filters.agent.pk]
    elif filters.team:
        ids = list(Agent.objects.filter(team=filters.team).values_list("pk", flat=True))
    else:
        ids = None
    today = timezone.now().astimezone(UTC).date()
    measured = health.health(today, filters.days, agent_ids=ids)
    names = dict(Agent.objects.values_list("pk", "name"))
    context = {
        "days": filters.days,
        "agent": filters.agent,
        "team": filters.team,
        "metrics": [_metric(spec, measured) for spec in METRICS],
        "agents": _agent_rows(measured, names),
    }
    with timezone.override(UTC):
        html = render_to_string("monitoring/_health.html", context)
    return {"html": html, "computed_at": timezone.now()}


def _cost(day: health.Day) -> str | None:
    """A day's cost per task, and how far it is from its 14-day baseline."""
    if day.cost_per_task is None:
        return None
    drift = day.cost_drift
    return f"{day.cost_per_task:.2f}¢" + ("" if drift is None else f" ({_drift(drift)})")


def _metric(spec: MetricSpec, measured: health.Health) -> dict[str, Any]:
    daily = [spec.value(day) for day in measured.overall]
    total = spec.value(measured.total)
    shown = None if total is None else spec.show(total)
    charted, threshold = daily, spec.threshold
    if spec.key == "cost":
        # The seed's check is daily: the headline is today's cost per task against the 14 days
        # before. The chart shows the cost per task itself (the table and the status, the drift).
        total, shown = spec.value(measured.overall[-1]), _cost(measured.overall[-1])
        charted, threshold = [day.cost_per_task for day in measured.overall], None
    chart = charts.chart(
        measured.days,
        [None if v is None else float(v) for v in charted],
        label=spec.chart_label,
        threshold=threshold,
        breach="above" if spec.breach in ("above", "at_least") else spec.breach,
    )
    rows = [
        {
            "day": day.day,
            "value": None if value is None else spec.show(value),
            "breach": spec.breached(value),
        }
        for day, value in zip(measured.overall, daily, strict=True)
    ]
    breaches = sum(1 for row in rows if row["breach"])
    return {
        "spec": spec,
        "total": shown,
        "breach": spec.breached(total) if spec.key != "violations" else breaches > 0,
        "breach_days": breaches,
        "chart": chart,
        "rows": rows,
    }


def _agent_rows(measured: health.Health, names: dict[int, str]) -> list[dict[str, Any]]:
    rows = []
    for agent_id, total in sorted(measured.agent_totals().items(), key=lambda i: names[i[0]]):
        per_day = measured.by_agent[agent_id]
        cells = []
        for spec in METRICS:
            label = spec.column or spec.title
            if spec.key == "violations":
                worst = max((day.violations for day in per_day), default=0)
                shown, breach = f"{total.violations} (max {worst}/day)", spec.breached(worst)
            elif spec.key == "cost":  # over the period, against the 14 days before it
                shown, breach = _cost(total) or "—", spec.breached(total.cost_drift)
            else:
                value = spec.value(total)
                shown = "—" if value is None else spec.show(value)
                breach = spec.breached(value)
            cells.append({"value": shown, "breach": breach, "label": label})
        rows.append({"name": names[agent_id], "cells": cells})
    return rows
