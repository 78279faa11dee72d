"""Reads for the agents pages: each agent with its latest activity, in a constant number of
queries however many agents and requests there are."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, DateTimeField, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from agents.models import Agent, ApiKey
from approvals.models import ApprovalRequest, Status


def _count(queryset: QuerySet) -> Subquery:
    return Subquery(
        queryset.order_by().values("agent").annotate(n=Count("pk")).values("n"),
        output_field=IntegerField(),
    )


def with_activity(queryset: QuerySet[Agent] | None = None) -> QuerySet[Agent]:
    """Agents annotated with `last_request_at`, `last_key_use_at` and `active_keys`
    (correlated subqueries that each read a few index entries per agent)."""
    agents = Agent.objects.all() if queryset is None else queryset
    last_request = ApprovalRequest.objects.filter(agent=OuterRef("pk")).order_by("-created_at")
    last_key_use = ApiKey.objects.filter(agent=OuterRef("pk"), last_used_at__isnull=False).order_by(
        "-last_used_at"
    )
    return agents.select_related("owner", "reenable_requested_by").annotate(
        last_request_at=Subquery(
            last_request.values("created_at")[:1], output_field=DateTimeField()
        ),
        last_key_use_at=Subquery(
            last_key_use.values("last_used_at")[:1], output_field=DateTimeField()
        ),
        active_keys=Coalesce(
            _count(ApiKey.objects.filter(agent=OuterRef("pk"), revoked_at__isnull=True)), 0
        ),
    )


def pending_requests(agent: Agent) -> int:
    """One agent's pending requests. (Not on the list: counting every agent's backlog there
    would read the whole pending set, 100 000 rows at the scale of SPEC §10.4, on each view.)"""
    return ApprovalRequest.objects.filter(agent=agent, status=Status.PENDING).count()


def last_activity(agent: Agent) -> datetime | None:
    """The later of the agent's last request and its last authenticated call."""
    moments = [getattr(agent, "last_request_at", None), getattr(agent, "last_key_use_at", None)]
    return max((m for m in moments if m is not None), default=None)
