"""Input validation and the documented response shape of the approval-requests API."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
from rest_framework import serializers

from approvals.models import RiskLevel, Status, Urgency
from controls.models import Receipt
from guardrails.serializers import PolicyRefSerializer, ReasonSerializer
from oversight.fields import (
    JSONObjectField,
    SingleLineField,
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
    StrictSerializer,
)


class CreateRequestSerializer(StrictSerializer):
    action = SingleLineField(
        max_length=200, help_text="What the agent wants to do, e.g. deploy_to_production."
    )
    params = JSONObjectField(
        required=False, default=dict, help_text="The action's arguments (a JSON object)."
    )
    risk_level = serializers.ChoiceField(
        choices=RiskLevel.choices,
        required=False,
        help_text="The agent's claim: it can raise the risk its action's policy sets, never "
        "lower it.",
    )
    urgency = serializers.ChoiceField(choices=Urgency.choices, default=Urgency.NORMAL)
    justification = StrictCharField(max_length=10_000, help_text="Why the agent wants to do it.")
    confidence = StrictFloatField(min_value=0, max_value=1, required=False, allow_null=True)
    estimated_cost_cents = StrictIntegerField(
        min_value=0, max_value=10**12, required=False, allow_null=True
    )
    timeout_seconds = StrictIntegerField(min_value=1, required=False, allow_null=True)
    callback_url = serializers.URLField(
        max_length=2000, required=False, allow_blank=True, default=""
    )

    def validate_callback_url(self, value: str) -> str:
        if value and not value.lower().startswith(("http://", "https://")):
            raise serializers.ValidationError("Only http and https callback URLs are supported.")
        if value:
            try:  # the client that will post to it must be able to use it
                httpx.URL(value).host.encode("idna")
                port = urlsplit(value).port  # ValueError outside 0-65535
                if port == 0:
                    raise ValueError(port)
            except Exception:
                raise serializers.ValidationError("This callback URL cannot be reached.") from None
        return value


class CancelSerializer(StrictSerializer):
    pass


class VoteSerializer(serializers.Serializer):
    who = serializers.CharField()
    username = serializers.CharField(allow_null=True)
    vote = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField()
    at = serializers.DateTimeField()
    params_sha256 = serializers.CharField()
    modified_params = serializers.JSONField(allow_null=True)
    voided = serializers.BooleanField()
    self_approval = serializers.BooleanField()
    on_behalf_of = serializers.CharField(
        allow_null=True, help_text="The away approver the voter stood in for, if any."
    )


class DecisionSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=Status.final())
    decided_at = serializers.DateTimeField()
    decided_by = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    modified_params = serializers.JSONField(allow_null=True)
    approved_params_sha256 = serializers.CharField(allow_null=True)


class ReceiptSerializer(serializers.Serializer):
    outcome_id = serializers.UUIDField()
    success = serializers.BooleanField()
    receipt = serializers.ChoiceField(
        choices=[Receipt.MATCHED, Receipt.MISMATCH, Receipt.NOT_APPROVED],
        help_text="matched: executed as approved; mismatch: other arguments than approved; "
        "not_approved: the request was not approved (both disable the agent).",
    )
    executed_params_sha256 = serializers.CharField()
    reported_at = serializers.DateTimeField()


class ApprovalRequestSerializer(serializers.Serializer):
    """Documentation of the response (the data itself comes from `representation.represent`)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Status.choices)
    action = serializers.CharField()
    params = serializers.JSONField()
    params_sha256 = serializers.CharField()
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    claimed_risk_level = serializers.ChoiceField(choices=RiskLevel.choices)
    risk_source = serializers.ChoiceField(
        choices=["policy", "claim"],
        help_text="What set risk_level: the action's policy, or the agent's claim above it.",
    )
    urgency = serializers.ChoiceField(choices=Urgency.choices)
    justification = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)
    estimated_cost_cents = serializers.IntegerField(allow_null=True)
    callback_url = serializers.URLField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    escalates_at = serializers.DateTimeField()
    escalated_at = serializers.DateTimeField(allow_null=True)
    escalation_level = serializers.IntegerField()
    current_tier = serializers.CharField()
    required_approvals = serializers.IntegerField()
    approvals = VoteSerializer(many=True)
    decision = DecisionSerializer(allow_null=True)
    url = serializers.URLField()
    policy = PolicyRefSerializer(
        allow_null=True, help_text="The policy version the create's check applied."
    )
    reasons = ReasonSerializer(
        many=True, help_text="The check's reasons: why the action needs a person."
    )
    receipt = ReceiptSerializer(
        allow_null=True,
        help_text="The outcome the agent reported executing this request with "
        "(POST /api/v1/outcomes), or null.",
    )


class ApprovalRequestPageSerializer(serializers.Serializer):
    """A page of the agent's requests, newest first (`approvals.api.NewestFirst`)."""

    next = serializers.URLField(allow_null=True, help_text="The next (older) page, if any.")
    previous = serializers.URLField(allow_null=True, help_text="The previous page, if any.")
    results = ApprovalRequestSerializer(many=True)
