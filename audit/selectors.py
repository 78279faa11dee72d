"""Reading the audit trail: filtered, newest first, one keyset page at a time.

Nothing here counts or offsets: a page is "the N events below (or above) sequence S that match",
which each index on the table (all ending in `sequence`) answers directly, however long the
table is. The page's query count and cost stay the same at a thousand or a million events.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from audit.events import ActorType
from audit.models import AuditEvent, ChainVerification

PAGE_SIZE = 50


@dataclass(frozen=True)
class EventFilters:
    event_type: str = ""
    actor: str = ""  # an exact name, "user:12", "agent:3" or "system"
    subject: str = ""  # "agent", "agent:3", "approval_request:42", ...
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return bool(self.event_type or self.actor or self.subject or self.since or self.until)


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    # Cursors for the links: newer events have sequence > newer_after, older < older_before.
    newer_after: int | None
    older_before: int | None


def actor_condition(text: str) -> Q:
    text = text.strip()
    if text.lower() == ActorType.SYSTEM:
        return Q(actor_type=ActorType.SYSTEM)
    kind, colon, ident = text.partition(":")
    if colon and kind.lower() in (ActorType.USER, ActorType.AGENT):
        return Q(actor_type=kind.lower(), actor_id=ident.strip())
    return Q(actor_name=text)


def subject_condition(text: str) -> Q:
    kind, colon, ident = text.strip().partition(":")
    condition = Q(subject_type=kind.strip())
    if colon:
        condition &= Q(subject_id=ident.strip())
    return condition


def filtered_events(filters: EventFilters) -> QuerySet[AuditEvent] | None:
    """The events matching `filters`, unordered; None when the time range holds none."""
    events = AuditEvent.objects.all()
    if filters.event_type:
        events = events.filter(event_type=filters.event_type)
    if filters.actor.strip():
        events = events.filter(actor_condition(filters.actor))
    if filters.subject.strip():
        events = events.filter(subject_condition(filters.subject))
    # occurred_at never decreases along the chain (record_event guarantees it), so a time
    # range is a sequence range: two index lookups on occurred_at find its ends, and the page
    # query then stays on the composite indexes instead of filtering on time row by row.
    if filters.since:
        first = (
            AuditEvent.objects.filter(occurred_at__gte=filters.since)
            .order_by("occurred_at", "sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        if first is None:
            return None
        events = events.filter(sequence__gte=first)
    if filters.until:
        last = (
            AuditEvent.objects.filter(occurred_at__lte=filters.until)
            .order_by("-occurred_at", "-sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        if last is None:
            return None
        events = events.filter(sequence__lte=last)
    return events


def event_page(
    filters: EventFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> EventPage:
    """One page of matching events, newest first.

    `before=S`: the page of events just below sequence S (the "older" link); `after=S`: the
    page just above it (the "newer" link). Neither: the newest page.
    """
    events = filtered_events(filters)
    if events is None:
        return EventPage([], None, None)
    if after is not None:
        rows = list(events.filter(sequence__gt=after).order_by("sequence")[: size + 1])
        if len(rows) > size:
            page = rows[:size][::-1]
            return EventPage(page, page[0].sequence, page[-1].sequence)
        # Reached the newest events: show the newest page, full, instead of a short one.
        before = None
    query = events if before is None else events.filter(sequence__lt=before)
    rows = list(query.order_by("-sequence")[: size + 1])
    page = rows[:size]
    if not page:
        return EventPage([], None, None)
    return EventPage(
        page,
        # Coming from a newer page means there is one; the first page has none.
        page[0].sequence if before is not None else None,
        page[-1].sequence if len(rows) > size else None,
    )


def latest_verification() -> ChainVerification | None:
    return ChainVerification.objects.select_related("checked_by").order_by("-checked_at").first()
