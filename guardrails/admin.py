"""Admin: policies are edited here through `guardrails.services` (each save a new version and a
`policy.changed` audit event, with the same checks as a policy file); versions, violations,
alerts and the check log are read-only records."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from guardrails import policies as policy_changes
from guardrails.forms import PolicyAdminForm
from guardrails.models import CheckRecord, Policy, PolicyVersion, Violation, ViolationAlert
from oversight.admin import ReadOnlyAdmin


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyAdminForm
    list_display = (
        "name",
        "scope_label",
        "category",
        "risk_level",
        "requires_approval",
        "rate_limit_per_hour",
        "max_cost_cents",
        "enabled",
        "version",
    )
    list_filter = ("scope", "category", "risk_level", "requires_approval", "enabled")
    search_fields = ("name", "team", "agent__name")
    autocomplete_fields = ("agent",)
    readonly_fields = ("version", "updated_at")

    @admin.display(description="applies to")
    def scope_label(self, obj: Policy) -> str:
        return obj.scope_label

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:
        saved = policy_changes.save_policy(
            fields=form.policy_fields(),
            policy=obj if change else None,
            actor=request.user,  # type: ignore[arg-type]
            source="admin",
        )
        obj.pk = saved.pk
        obj.version = saved.version

    def delete_model(self, request: HttpRequest, obj: Policy) -> None:
        policy_changes.delete_policy(policy=obj, actor=request.user, source="admin")  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Policy]) -> None:
        for policy in queryset:
            self.delete_model(request, policy)

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        # save_model makes the row (through the service); the form must not save it first.
        return form.save(commit=False)


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    list_display = ("name", "scope", "team", "agent_name", "version", "change", "created_at")
    list_filter = ("change", "scope")
    search_fields = ("name",)
    date_hierarchy = "created_at"


@admin.register(Violation)
class ViolationAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "agent", "action", "code", "severity", "purpose")
    list_filter = ("code", "severity", "purpose")
    search_fields = ("agent__name", "action")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(ViolationAlert)
class ViolationAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "agent", "count", "message")


@admin.register(CheckRecord)
class CheckRecordAdmin(ReadOnlyAdmin):
    list_display = ("checked_at", "agent", "action", "purpose", "decision")
    list_filter = ("decision", "purpose")
    search_fields = ("action",)
    date_hierarchy = "checked_at"
    show_full_result_count = False
