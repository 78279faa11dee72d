"""Input validation and the documented response shapes of the costs API and agents/me."""

from __future__ import annotations

from rest_framework import serializers

from budgets.models import Mode, Period, Scope
from oversight.fields import (
    SingleLineField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
)

MAX_TOKENS = 10**12


class CostReportSerializer(StrictSerializer):
    model = SingleLineField(max_length=200, help_text="The model called, e.g. gpt-4o.")
    input_tokens = StrictIntegerField(
        min_value=0, max_value=MAX_TOKENS, help_text="Input tokens billed at the full rate."
    )
    output_tokens = StrictIntegerField(min_value=0, max_value=MAX_TOKENS)
    cached_input_tokens = StrictIntegerField(
        min_value=0,
        max_value=MAX_TOKENS,
        default=0,
        help_text="Input tokens served from the provider's prompt cache (the cached rate).",
    )
    task_id = StrictCharField(
        max_length=200,
        required=False,
        default="",
        allow_blank=True,
        help_text="Your task's id. An approval request's id reconciles its estimated cost.",
    )
    success = StrictBooleanField(default=True, help_text="false for a failed call.")


class BudgetStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.ChoiceField(choices=Scope.choices)
    name = serializers.CharField()
    period = serializers.ChoiceField(choices=Period.choices)
    limit_cents = serializers.IntegerField()
    raised_cents = serializers.DecimalField(
        max_digits=24,
        decimal_places=8,
        help_text="What approvals added to this period's limit (ask mode).",
    )
    spent_cents = serializers.DecimalField(max_digits=24, decimal_places=8)
    reserved_cents = serializers.DecimalField(
        max_digits=24, decimal_places=8, help_text="Estimates of admitted requests not yet spent."
    )
    percent_used = serializers.FloatField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField(help_text="When this period's spend resets.")
    status = serializers.ChoiceField(choices=["ok", "warning", "exceeded"])
    mode = serializers.ChoiceField(
        choices=Mode.choices,
        help_text="At the limit: enforce (refuse), alert-only, or ask (a person approves).",
    )
    enforced = serializers.BooleanField(help_text="The mode is enforce.")
    blocks_new_requests = serializers.BooleanField(
        help_text="True when new approval requests are refused (403 budget_exceeded)."
    )
    asks_a_person = serializers.BooleanField(
        help_text="True when new actions need a person's approval (ask mode, past the limit)."
    )


class CostRecordSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField()
    cost_cents = serializers.DecimalField(
        max_digits=24, decimal_places=8, help_text="Exact cost in cents, as a decimal string."
    )
    unknown_model = serializers.BooleanField(
        help_text="No price for this model: recorded at zero cost and alerted."
    )
    price_effective_from = serializers.DateTimeField(
        allow_null=True, help_text="The start of the price version used."
    )
    created_at = serializers.DateTimeField()
    budgets = BudgetStateSerializer(many=True)
