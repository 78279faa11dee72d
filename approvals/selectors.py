"""Reads: an agent's own requests (the agent API); which requests a person may decide, most
urgent first; the escalation queue and the decision figures managers watch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Tier, User
from accounts.selectors import approvers
from agents.models import Agent
from approvals import rules
from approvals.models import ApprovalRequest, RiskLevel, Status, Vote, VoteChoice
from oversight import sql


def requests_of(agent: Agent) -> QuerySet[ApprovalRequest]:
    """The requests `agent` made, the only ones it may see (SPEC §3), with what their
    representation reads."""
    return ApprovalRequest.objects.filter(agent=agent).select_related(
        "agent", "decided_by", "policy_version", "receipt"
    )


def decidable_by(
    user: User, *, risk: str = "", urgency: str = "", q: str = ""
) -> QuerySet[ApprovalRequest]:
    """Pending, not yet overdue requests `user` may vote on (SPEC §2 who may decide), soonest
    deadline first, optionally narrowed to a risk, an urgency, or an agent/action containing
    `q`. Requests they already voted on stay listed (a critical one may still need a second
    person) but are marked by the page."""
    if not user.has_inbox:
        return ApprovalRequest.objects.none()
    queryset = ApprovalRequest.objects.filter(
        status=Status.PENDING,
        expires_at__gt=timezone.now(),
        first_tier_rank__lte=Tier.rank(user.tier),  # User.covers, on the first tier's rank
    )
    queryset = rules.exclude_self_approvals(queryset, user)
    if risk:
        queryset = queryset.filter(risk_level=risk)
    if urgency:
        queryset = queryset.filter(urgency=urgency)
    if q:
        queryset = queryset.filter(Q(action__icontains=q) | Q(agent__name__icontains=q))
    return queryset.select_related("agent").order_by("expires_at", "created_at")


# --- Escalations (managers, SPEC §4) --------------------------------------------------------

# "Soon to expire" on the escalations page: within this of the deadline.
EXPIRING_SOON = timedelta(minutes=30)
# Time-to-decision, expiry rate and load per approver look back this far.
STATS_WINDOW = timedelta(days=30)
QUEUE_LIMIT = 100


def escalation_queue(now: datetime) -> QuerySet[ApprovalRequest]:
    """Pending requests across all tiers that escalated or expire within `EXPIRING_SOON`, the
    closest deadline first, with their live approvals counted (one query, whatever the rows)."""
    live_approvals = (
        Vote.objects.filter(request=OuterRef("pk"), vote=VoteChoice.APPROVE, voided_at__isnull=True)
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__gt=now)
        .filter(Q(escalated_at__isnull=False) | Q(expires_at__lte=now + EXPIRING_SOON))
        .select_related("agent")
        .annotate(live_approvals=Coalesce(Subquery(live_approvals), 0))
        .order_by("expires_at", "created_at")
    )


@dataclass(frozen=True)
class TierLoad:
    tier: str
    label: str
    pending: int  # waiting at this tier now (its current tier)
    escalated: int
    expiring_soon: int
    approvers: int

    @property
    def per_approver(self) -> float | None:
        return self.pending / self.approvers if self.approvers else None


def tier_load(now: datetime) -> list[TierLoad]:
    """Pending requests per current tier (all, escalated, expiring soon) beside the number of
    active approvers in each tier: two grouped queries."""
    pending = {
        row["current_tier"]: row
        for row in ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__gt=now)
        .order_by()
        .values("current_tier")
        .annotate(
            pending=Count("pk"),
            escalated=Count("pk", filter=Q(escalated_at__isnull=False)),
            expiring_soon=Count("pk", filter=Q(expires_at__lte=now + EXPIRING_SOON)),
        )
    }
    per_tier = dict(
        approvers()
        .order_by()
        .values("tier")
        .annotate(n=Count("pk", distinct=True))
        .values_list("tier", "n")
    )
    loads = []
    for tier, label in Tier.choices:
        row = pending.get(tier)
        loads.append(
            TierLoad(
                tier=tier,
                label=label,
                pending=row["pending"] if row else 0,
                escalated=row["escalated"] if row else 0,
                expiring_soon=row["expiring_soon"] if row else 0,
                approvers=per_tier.get(tier, 0),
            )
        )
    return loads


@dataclass(frozen=True)
class RiskStats:
    risk: str
    label: str
    approved: int = 0
    rejected: int = 0
    expired: int = 0
    median_seconds: float | None = None
    p90_seconds: float | None = None

    @property
    def decided(self) -> int:
        return self.approved + self.rejected

    @property
    def expiry_rate(self) -> float | None:
        """Expired among the requests that ended for lack or presence of a decision."""
        ended = self.decided + self.expired
        return self.expired / ended if ended else None


# Human decisions only: an expired request has no decision time, a cancelled one no decider.
_PERCENTILES_SQL = """
WITH decided AS (
    SELECT risk_level, {seconds} AS seconds,
           ROW_NUMBER() OVER (PARTITION BY risk_level ORDER BY {seconds}) - 1 AS i,
           COUNT(*) OVER (PARTITION BY risk_level) AS n
    FROM {table}
    WHERE status IN (%s, %s) AND decided_at >= %s
)
SELECT risk_level, {p50} AS p50, {p90} AS p90 FROM decided GROUP BY risk_level
"""


def decision_stats(now: datetime) -> list[RiskStats]:
    """Per effective risk over `STATS_WINDOW`: approved, rejected and expired counts, the
    expiry rate, and median and p90 time-to-decision (seconds) — computed by the database in
    two grouped queries, whatever the number of requests."""
    since = now - STATS_WINDOW
    counts: dict[str, dict[str, int]] = {}
    for row in (
        ApprovalRequest.objects.filter(
            decided_at__gte=since, status__in=[Status.APPROVED, Status.REJECTED, Status.EXPIRED]
        )
        .order_by()
        .values("risk_level", "status")
        .annotate(n=Count("pk"))
    ):
        counts.setdefault(row["risk_level"], {})[row["status"]] = row["n"]
    query = _PERCENTILES_SQL.format(
        seconds=sql.DECISION_SECONDS[connection.vendor],
        table=ApprovalRequest._meta.db_table,
        p50=sql.percentile(50),
        p90=sql.percentile(90),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, [Status.APPROVED, Status.REJECTED, since])
        percentiles = {risk: (float(p50), float(p90)) for risk, p50, p90 in cursor.fetchall()}
    stats = []
    for risk, label in RiskLevel.choices:
        by_status = counts.get(risk, {})
        p50, p90 = percentiles.get(risk, (None, None))
        stats.append(
            RiskStats(
                risk=risk,
                label=label,
                approved=by_status.get(Status.APPROVED, 0),
                rejected=by_status.get(Status.REJECTED, 0),
                expired=by_status.get(Status.EXPIRED, 0),
                median_seconds=p50,
                p90_seconds=p90,
            )
        )
    return stats


def votes_per_person(now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """The busiest approvers over `STATS_WINDOW`: votes cast, approvals, rejections."""
    rows = list(
        Vote.objects.filter(created_at__gte=now - STATS_WINDOW)
        .order_by()
        .values("voter_id", "voter_name", "voter__tier")
        .annotate(
            votes=Count("pk"),
            approvals=Count("pk", filter=Q(vote=VoteChoice.APPROVE)),
            rejections=Count("pk", filter=Q(vote=VoteChoice.REJECT)),
        )
        .order_by("-votes", "voter_name")[:limit]
    )
    return [
        {**row, "tier_label": Tier(row["voter__tier"]).label if row["voter__tier"] else ""}
        for row in rows
    ]
