"""Admin: escalation routes are editable (and audited); requests, callbacks and emails are
read-only, except that a callback that failed for good can be retried (an action, through
`callbacks.retry_callback`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from approvals import callbacks, routes
from approvals.models import (
    ApprovalRequest,
    CallbackAlertEmail,
    CallbackAttempt,
    CallbackDelivery,
    EmailDelivery,
    EscalationRoute,
    Vote,
)
from oversight.admin import ReadOnlyAdmin


@admin.register(EscalationRoute)
class EscalationRouteAdmin(admin.ModelAdmin):
    list_display = ("risk_level", "tiers", "updated_at")
    fields = ("risk_level", "tiers")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # every risk level needs a route

    def save_model(
        self, request: HttpRequest, obj: EscalationRoute, form: Any, change: bool
    ) -> None:
        routes.save_route(route=obj, actor=request.user)  # type: ignore[arg-type]


class VoteInline(admin.TabularInline):
    model = Vote
    extra = 0
    fields = (
        "voter_name",
        "vote",
        "comment",
        "params_sha256",
        "is_self_approval",
        "voided_at",
        "created_at",
    )
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "action",
        "agent",
        "status",
        "risk_level",
        "urgency",
        "current_tier",
        "created_at",
        "expires_at",
    )
    list_filter = ("status", "risk_level", "urgency")
    search_fields = ("action", "agent__name", "id")
    date_hierarchy = "created_at"
    inlines = [VoteInline]
    show_full_result_count = False  # no COUNT(*) over a large table


class CallbackAttemptInline(admin.TabularInline):
    model = CallbackAttempt
    extra = 0
    fields = ("attempted_at", "status_code", "error", "duration_ms")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("request", "url", "status", "attempts", "next_attempt_at", "delivered_at")
    list_filter = ("status",)
    search_fields = ("request__agent__name", "url")
    inlines = [CallbackAttemptInline]
    actions = ["retry"]

    @admin.action(description="Retry the selected callbacks that failed for good")
    def retry(self, request: HttpRequest, queryset: QuerySet[CallbackDelivery]) -> None:
        retried = 0
        for delivery in queryset:
            try:
                callbacks.retry_callback(delivery_id=delivery.pk, actor=request.user)  # type: ignore[arg-type]
            except callbacks.NotDeadLettered as exc:
                self.message_user(request, f"{delivery}: {exc}", messages.WARNING)
            else:
                retried += 1
        if retried:
            self.message_user(request, f"Retrying {retried} callback(s) now.")


@admin.register(CallbackAlertEmail)
class CallbackAlertEmailAdmin(ReadOnlyAdmin):
    list_display = ("agent", "window_start", "status", "attempts", "delivered_at")
    list_filter = ("status",)


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("request", "kind", "tier", "status", "attempts", "delivered_at")
    list_filter = ("status", "kind")
