"""Admin: budgets and model prices are edited here (through the services, so every change is
audited); costs, windows and alerts are read-only records."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from budgets import services
from budgets.models import Alert, AlertEmail, Budget, BudgetWindow, CostRecord, ModelPrice
from oversight.admin import ReadOnlyAdmin


class BudgetForm(forms.ModelForm):
    thresholds = forms.CharField(
        initial="80,95,100", help_text="Alert at these percentages of the limit, comma-separated."
    )

    class Meta:
        model = Budget
        fields = ("scope", "agent", "team", "period", "limit_cents", "thresholds", "mode")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["thresholds"] = ",".join(str(t) for t in self.instance.thresholds)

    def clean_thresholds(self) -> list[int]:
        raw = self.cleaned_data["thresholds"]
        try:
            values = [int(part) for part in raw.split(",") if part.strip()]
            return services.clean_thresholds(values)
        except ValueError:
            raise forms.ValidationError(
                "Whole percentages separated by commas, e.g. 80,95,100."
            ) from None


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    form = BudgetForm
    list_display = ("__str__", "scope", "period", "limit_cents", "thresholds", "mode")
    list_filter = ("scope", "period", "mode")
    autocomplete_fields = ("agent",)

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        services.set_budget(
            budget=obj,
            scope=obj.scope,
            period=obj.period,
            limit_cents=obj.limit_cents,
            agent=obj.agent,
            team=obj.team,
            thresholds=obj.thresholds,
            mode=obj.mode,
            actor=request.user,  # type: ignore[arg-type]
        )

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        services.delete_budget(budget=obj, actor=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            self.delete_model(request, budget)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model",
        "effective_from",
        "input_cents_per_mtok",
        "output_cents_per_mtok",
        "cached_input_cents_per_mtok",
    )
    search_fields = ("model",)
    fields = (
        "model",
        "effective_from",
        "input_cents_per_mtok",
        "output_cents_per_mtok",
        "cached_input_cents_per_mtok",
    )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A version costs were computed with never changes: add a new one instead.
        if obj is not None and obj.costs.exists():
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only a version not yet in force can go: nothing can have used it.
        if obj is None or obj.effective_from <= timezone.now():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        services.save_price(price=obj, actor=request.user)  # type: ignore[arg-type]

    def delete_model(self, request: HttpRequest, obj: ModelPrice) -> None:
        services.delete_price(price=obj, actor=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelPrice]) -> None:
        for price in queryset:
            self.delete_model(request, price)


@admin.register(CostRecord)
class CostRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "agent",
        "model",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cost_cents",
        "unknown_model",
        "success",
    )
    list_filter = ("unknown_model", "success")
    search_fields = ("agent__name", "model", "task_id")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(BudgetWindow)
class BudgetWindowAdmin(ReadOnlyAdmin):
    list_display = (
        "budget",
        "window_start",
        "window_end",
        "spent_cents",
        "reserved_cents",
        "calls",
    )
    list_filter = ("budget",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "message")
    list_filter = ("kind",)


@admin.register(AlertEmail)
class AlertEmailAdmin(ReadOnlyAdmin):
    list_display = ("alert", "status", "attempts", "sent_to", "delivered_at")
    list_filter = ("status",)
