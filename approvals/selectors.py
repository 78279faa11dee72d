"""Reads for people's pages: which requests a person may decide, most urgent first."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import Role, Tier, User
from approvals.models import ApprovalRequest, Status


def decidable_by(user: User) -> QuerySet[ApprovalRequest]:
    """Pending, not yet overdue requests `user` may vote on (SPEC §2 who may decide), soonest
    deadline first. Requests they already voted on stay listed (a critical one may still need
    a second person) but are marked by the page."""
    if not user.has_role(Role.APPROVER) or not user.tier:
        return ApprovalRequest.objects.none()
    queryset = ApprovalRequest.objects.filter(
        status=Status.PENDING,
        expires_at__gt=timezone.now(),
        first_tier_rank__lte=Tier.rank(user.tier),
    )
    if not settings.OVERSIGHT_ALLOW_SELF_APPROVAL:
        queryset = queryset.exclude(agent__owner=user)
    return queryset.select_related("agent").order_by("expires_at", "created_at")
