"""Input validation and the documented response shapes of the outcomes API (SPEC §3, §6)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from controls.models import Outcome, Receipt
from oversight.fields import (
    JSONObjectField,
    SingleLineField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictSerializer,
)


class OutcomeSerializer(StrictSerializer):
    action = SingleLineField(max_length=200, help_text="What the agent did, e.g. write_file.")
    params = JSONObjectField(
        required=False,
        help_text="The arguments it executed with (or send their params_sha256 instead).",
    )
    params_sha256 = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        help_text="SHA-256 of the canonical {action, params}, as a request's params_sha256.",
    )
    approval_request_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="The approved request this executed: the outcome is its execution receipt.",
    )
    success = StrictBooleanField()
    error = StrictCharField(required=False, allow_blank=True, max_length=10_000, default="")
    duration_ms = StrictIntegerField(min_value=0, max_value=10**12, required=False, allow_null=True)
    cost_cents = serializers.DecimalField(
        max_digits=16, decimal_places=6, min_value=0, required=False, allow_null=True
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("params" in attrs) == ("params_sha256" in attrs):
            raise serializers.ValidationError(
                {"params": ["Send params, or params_sha256, not both and not neither."]}
            )
        return attrs


class OutcomeResultSerializer(serializers.ModelSerializer):
    approval_request_id = serializers.UUIDField(allow_null=True)
    receipt = serializers.ChoiceField(
        choices=Receipt.choices,
        help_text="matched: executed as approved; none: no request named.",
    )
    consecutive_failures = serializers.SerializerMethodField(
        help_text="The agent's failures and rejections in a row after this report."
    )

    class Meta:
        model = Outcome
        fields = [
            "id",
            "action",
            "params_sha256",
            "approval_request_id",
            "receipt",
            "approved_params_sha256",
            "success",
            "error",
            "duration_ms",
            "cost_cents",
            "critical",
            "created_at",
            "consecutive_failures",
        ]

    def get_consecutive_failures(self, outcome: Outcome) -> int:
        return int(outcome.agent.consecutive_failures)
