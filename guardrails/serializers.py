"""Input validation and the documented response shapes of the guardrails API (SPEC §3, §6)."""

from __future__ import annotations

from rest_framework import serializers

from approvals.models import RiskLevel
from budgets.models import Scope
from guardrails.models import Category
from oversight.fields import (
    JSONObjectField,
    SingleLineField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
)

DECISIONS = ["allow", "deny", "require_approval"]


class CheckSerializer(StrictSerializer):
    action = SingleLineField(
        max_length=200, help_text="What the agent is about to do, e.g. read_file."
    )
    params = JSONObjectField(
        required=False, default=dict, help_text="The action's arguments (a JSON object)."
    )
    estimated_cost_cents = StrictIntegerField(
        min_value=0, max_value=10**12, required=False, allow_null=True
    )
    confidence = StrictFloatField(
        min_value=0,
        max_value=1,
        required=False,
        allow_null=True,
        help_text="How sure the agent is (0-1); below 0.5 a person decides, below 0.1 it is "
        "refused.",
    )


class PolicyRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    scope = serializers.ChoiceField(choices=Scope.choices)


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable: e.g. forbidden_pattern, rate_limited.")
    message = serializers.CharField()
    effect = serializers.ChoiceField(
        choices=DECISIONS,
        help_text="What this reason alone would answer: allow only for standing_approval.",
    )
    param = serializers.CharField(required=False, help_text="Where in params, if it applies.")
    pattern = serializers.CharField(required=False, help_text="The forbidden pattern matched.")


class CheckResultSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DECISIONS)
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices, allow_null=True)
    category = serializers.ChoiceField(choices=Category.choices, allow_null=True)
    policy = PolicyRefSerializer(allow_null=True)
    reasons = ReasonSerializer(many=True)
    violation_id = serializers.IntegerField(
        allow_null=True, help_text="The guardrail violation a deny recorded."
    )
    params_sha256 = serializers.CharField(
        help_text="The argument hash (as an approval request of this call would carry)."
    )
    grant_id = serializers.IntegerField(
        allow_null=True,
        help_text="The standing approval that allowed the call in a person's place (reason "
        "standing_approval), one of its uses counted; null otherwise.",
    )


class PolicySerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    scope = serializers.ChoiceField(choices=Scope.choices)
    category = serializers.ChoiceField(choices=Category.choices)
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    requires_approval = serializers.BooleanField()
    max_cost_cents = serializers.IntegerField(allow_null=True)
    rate_limit_per_hour = serializers.IntegerField(allow_null=True)
    allowed_resources = serializers.ListField(child=serializers.CharField())
    forbidden_patterns = serializers.ListField(child=serializers.CharField())
    sensitive = serializers.BooleanField()
    params_schema = serializers.JSONField(allow_null=True)


class PolicyListSerializer(serializers.Serializer):
    policies = PolicySerializer(many=True)
    unknown_actions = serializers.ChoiceField(
        choices=["deny", "require_approval"],
        help_text="What the check answers for an action no policy covers.",
    )
