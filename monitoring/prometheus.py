"""`/metrics`: the Prometheus exposition (SPEC §12; docs/monitoring.md lists the series).

Two kinds of series:
- counters and histograms (`oversight.instruments`), moved where their events happen, in
  whichever process that is; with PROMETHEUS_MULTIPROC_DIR set every process's files are
  summed here (`MultiProcessCollector`), so a scrape of one web process sees them all;
- gauges of the database's state (requests by status, pending by tier, spend, outbox backlogs,
  the audit head, checkpoint age), read at scrape time by `DatabaseCollector` in a fixed
  handful of grouped queries, whatever the size of the tables.

The endpoint wants `Authorization: Bearer <OVERSIGHT_METRICS_TOKEN>`: 401 without one (or a
malformed header), 403 with a wrong one. With no token configured it does not exist (404).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError
from django.db.models import CharField, Count, Max, Min, QuerySet, Value
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from approvals.models import ApprovalRequest, Status
from audit.models import AuditEvent, Checkpoint, SiemCursor
from budgets.models import Budget, BudgetWindow, Scope
from oversight import instruments
from oversight.outbox import DeliveryStatus, OutboxItem

logger = logging.getLogger(__name__)

CHALLENGE = 'Bearer realm="metrics"'


@login_not_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.OVERSIGHT_METRICS_TOKEN
    if not token:
        raise Http404  # not configured: the endpoint does not exist
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse("Send Authorization: Bearer <token>.\n", status=401)
        response["WWW-Authenticate"] = CHALLENGE
        return response
    if not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponse("Wrong token.\n", status=403)
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def registry() -> CollectorRegistry:
    """What a scrape reads: every process's counters (or this process's, without the
    multiprocess directory) and the database's gauges."""
    scraped = CollectorRegistry(auto_describe=False)
    if instruments.multiprocess_dir():
        MultiProcessCollector(scraped)
    else:
        scraped.register(_ThisProcess())
    scraped.register(DatabaseCollector())
    return scraped


class _ThisProcess(Collector):
    """The default registry: this process's counters, and its process and GC figures."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class DatabaseCollector(Collector):
    """Gauges of the database's state, read when scraped (a few grouped queries)."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "oversight_metrics_database_up", "1 when the database's gauges could be read."
        )
        try:
            families = list(self._families(timezone.now()))
        except DatabaseError:
            logger.warning("metrics: the database could not be read", exc_info=True)
            families = []
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families

    def _families(self, now: datetime) -> Iterator[Metric]:
        yield from _requests()
        yield from _budgets(now)
        yield from _outboxes(now)
        yield from _audit(now)


def _requests() -> Iterator[Metric]:
    by_status = GaugeMetricFamily(
        "oversight_approval_requests_by_status", "Approval requests by status.", labels=["status"]
    )
    pending = GaugeMetricFamily(
        "oversight_approval_requests_pending",
        "Pending approval requests by the tier they wait on.",
        labels=["tier"],
    )
    # One grouped query: (status, tier) pairs are at most 5 x 4 rows.
    rows = (
        ApprovalRequest.objects.order_by()
        .values_list("status", "current_tier")
        .annotate(n=Count("pk"))
    )
    statuses = dict.fromkeys(Status.values, 0)
    tiers: dict[str, int] = {}
    for status, tier, n in rows:
        statuses[status] = statuses.get(status, 0) + n
        if status == Status.PENDING:
            tiers[tier] = n
    for status, n in statuses.items():
        by_status.add_metric([status], n)
    for tier, n in sorted(tiers.items()):
        pending.add_metric([tier], n)
    yield by_status
    yield pending


def _budgets(now: datetime) -> Iterator[Metric]:
    labels = ["budget", "scope", "target", "period"]
    spent = GaugeMetricFamily(
        "oversight_budget_spent_cents", "Spend in each budget's current period.", labels=labels
    )
    reserved = GaugeMetricFamily(
        "oversight_budget_reserved_cents",
        "Estimates held for admitted requests in each budget's current period.",
        labels=labels,
    )
    limit = GaugeMetricFamily("oversight_budget_limit_cents", "Each budget's limit.", labels=labels)
    current = {
        budget_id: (spent_cents, reserved_cents)
        for budget_id, spent_cents, reserved_cents in BudgetWindow.objects.filter(
            window_start__lte=now, window_end__gt=now
        ).values_list("budget_id", "spent_cents", "reserved_cents")
    }
    budgets = Budget.objects.order_by("pk").values_list(
        "pk", "scope", "agent__name", "team", "period", "limit_cents"
    )
    for pk, scope, agent_name, team, period, limit_cents in budgets:
        target = agent_name if scope == Scope.AGENT else team if scope == Scope.TEAM else "all"
        values = [str(pk), scope, target or "", period]
        window = current.get(pk, (0, 0))
        spent.add_metric(values, float(window[0]))
        reserved.add_metric(values, float(window[1]))
        limit.add_metric(values, limit_cents)
    yield from (spent, reserved, limit)


def outbox_models() -> list[type[OutboxItem]]:
    """Every outbox table of the installed apps."""
    return sorted(
        (model for model in apps.get_models() if issubclass(model, OutboxItem)),
        key=lambda model: model._meta.label_lower,
    )


def _outboxes(now: datetime) -> Iterator[Metric]:
    backlog = GaugeMetricFamily(
        "oversight_outbox_backlog",
        "Outbox rows still to deliver (pending, due or backing off).",
        labels=["outbox"],
    )
    oldest = GaugeMetricFamily(
        "oversight_outbox_oldest_age_seconds",
        "Age of the oldest row still to deliver; 0 when none is.",
        labels=["outbox"],
    )
    # One query for every table: a UNION ALL of one aggregate row each.
    parts: list[QuerySet[Any, Any]] = [
        model._default_manager.filter(status=DeliveryStatus.PENDING)
        .order_by()
        .annotate(outbox=Value(model._meta.label_lower, output_field=CharField()))
        .values("outbox")
        .annotate(n=Count("pk"), oldest=Min("created_at"))
        for model in outbox_models()
    ]
    if parts:
        for row in parts[0].union(*parts[1:], all=True).order_by():
            label, first = str(row["outbox"]), row["oldest"]
            backlog.add_metric([label], float(row["n"]))
            age = (now - first).total_seconds() if isinstance(first, datetime) else 0.0
            oldest.add_metric([label], max(age, 0.0))
    yield backlog
    yield oldest


def _audit(now: datetime) -> Iterator[Metric]:
    head = AuditEvent.objects.aggregate(head=Max("sequence"))["head"] or 0
    yield GaugeMetricFamily(
        "oversight_audit_head_sequence", "The audit chain's last sequence number.", value=head
    )
    checkpoint = Checkpoint.objects.order_by("-size").values_list("size", "created_at").first()
    if checkpoint is not None:
        yield GaugeMetricFamily(
            "oversight_audit_checkpoint_size", "Events covered by the last checkpoint.",
            value=checkpoint[0],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "oversight_audit_checkpoint_age_seconds",
            "Seconds since the last signed checkpoint of the audit log.",
            value=max((now - checkpoint[1]).total_seconds(), 0.0),
        )
    lag = GaugeMetricFamily(
        "oversight_audit_siem_lag_events",
        "Audit events not yet delivered to each SIEM destination.",
        labels=["destination"],
    )
    for destination, delivered in SiemCursor.objects.values_list(
        "destination", "delivered_sequence"
    ):
        # Only where it goes: a URL's path or query might carry a secret.
        parts = urlsplit(destination)
        port = f":{parts.port}" if parts.port else ""
        lag.add_metric([f"{parts.scheme}://{parts.hostname}{port}"], max(head - delivered, 0))
    yield lag


# Routed by oversight.urls with include(), so the URL root imports no app for it.
urlpatterns = [path("", metrics, name="metrics")]
