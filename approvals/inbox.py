"""What a person's inbox shows: the rows the page, its refresh and the live push all draw."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import QueryDict

from accounts.models import User
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
    return {"item": item, "voted": voted, "row_id": f"request-{request_id}"}


def _voted(user: User, requests: list[ApprovalRequest]) -> set[uuid.UUID]:
    """Which of these requests the person has a standing vote on (the row says so)."""
    votes = user.votes.filter(request__in=requests, voided_at__isnull=True)
    return set(votes.values_list("request_id", flat=True))
