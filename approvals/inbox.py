"""What a person's inbox shows: the rows the page, its refresh and the live push all draw."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict
from django.utils import timezone

from accounts.models import User
from accounts.selectors import standing_in
from approvals import selectors
from approvals.forms import InboxFilterForm
from approvals.models import ApprovalRequest

INBOX_LIMIT = 200


def inbox_context(user: User, query: QueryDict | None = None) -> dict[str, Any]:
    """The rows of a person's inbox (the page, its refresh, and the live push share it),
    filtered by `query` (the page's query string)."""
    form = InboxFilterForm(query or QueryDict())
    filters = form.filters()
    pending = list(selectors.decidable_by(user, **filters)[:INBOX_LIMIT])
    return {
        "pending": pending,
        "voted": _voted(user, pending),
        "standing_in": _standing_in(user),
        "limit": INBOX_LIMIT,
        "filter_form": form,
        "filtered": bool(filters),
        # Canonical query string of the filters in force: the refresh and the socket keep them.
        "filter_query": urlencode(filters),
    }


def inbox_row_context(user: User, query: QueryDict, request_id: str) -> dict[str, Any]:
    """One request's row as it belongs in this person's filtered inbox (the live push), or
    `item` None when it no longer does (decided, expired, filtered out, not theirs)."""
    filters = InboxFilterForm(query).filters()
    item = selectors.decidable_by(user, **filters).filter(pk=request_id).first()
    voted = _voted(user, [item]) if item else set()
    standing_in = _standing_in(user) if item else {}
    return {
        "item": item,
        "voted": voted,
        "standing_in": standing_in,
        "row_id": f"request-{request_id}",
    }


def _standing_in(user: User) -> dict[str, str]:
    """The tiers (other than the person's own) of the away people they stand in for, with
    those people's names: the rows routed there say "for …" (issue 24: delegation)."""
    names: dict[str, list[str]] = {}
    for delegation in standing_in(user, timezone.now()):
        principal = delegation.delegator
        if principal.tier and principal.tier != user.tier:
            names.setdefault(principal.tier, []).append(principal.display_name)
    return {tier: ", ".join(people) for tier, people in names.items()}


def _voted(user: User, requests: list[ApprovalRequest]) -> set[uuid.UUID]:
    """Which of these requests the person has a standing vote on (the row says so)."""
    votes = user.votes.filter(request__in=requests, voided_at__isnull=True)
    return set(votes.values_list("request_id", flat=True))
