"""Admin: the trail is read-only here too (the database would refuse changes anyway)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet, Subquery
from django.http import HttpRequest

from audit import siem
from audit.events import EventType
from audit.models import AuditEvent, ChainVerification, SiemCursor
from oversight.admin import ReadOnlyAdmin


class EventTypeFilter(admin.SimpleListFilter):
    # The vocabulary, rather than Django's default SELECT DISTINCT over the whole table.
    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in EventType.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "occurred_at", "event_type", "actor_label", "subject_label")
    list_filter = (EventTypeFilter,)
    search_fields = ("=actor_name", "=subject_id")
    # Counting a million rows for the paginator is the slow part of a changelist.
    show_full_result_count = False
    ordering = ("-sequence",)


@admin.register(ChainVerification)
class ChainVerificationAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "intact", "events_checked", "first_bad_sequence", "checked_by")


@admin.register(SiemCursor)
class SiemCursorAdmin(ReadOnlyAdmin):
    """How far each SIEM stream got (audit.siem): read-only, as only the stream moves it. Rows
    of destinations no longer configured stay, marked so."""

    list_display = (
        "destination",
        "configured",
        "delivered_sequence",
        "backlog",
        "delivered_at",
        "attempts",
        "last_attempt_at",
        "last_error",
    )
    ordering = ("destination",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SiemCursor]:
        # The head of the trail once, in the same query, for every row's backlog.
        head = AuditEvent.objects.order_by("-sequence").values("sequence")[:1]
        return super().get_queryset(request).annotate(head=Subquery(head))

    @admin.display(description="backlog")
    def backlog(self, cursor: SiemCursor) -> int:
        return max((getattr(cursor, "head", None) or 0) - cursor.delivered_sequence, 0)

    @admin.display(description="configured", boolean=True)
    def configured(self, cursor: SiemCursor) -> bool:
        return cursor.destination in {d.name for d in siem.destinations()}
