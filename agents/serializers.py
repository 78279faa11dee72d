from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import User
from agents.models import Agent, AgentStatus, ApiKey
from budgets.selectors import agent_states
from budgets.serializers import BudgetStateSerializer


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["prefix", "label", "created_at", "last_used_at"]


class AgentSerializer(serializers.ModelSerializer):
    owner: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    status = serializers.ChoiceField(choices=AgentStatus.choices, read_only=True)

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "team",
            "owner",
            "status",
            "status_reason",
            "status_changed_at",
            "created_at",
        ]


class AgentMeSerializer(AgentSerializer):
    api_key = ApiKeySerializer(read_only=True)
    budgets = serializers.SerializerMethodField(
        help_text="The budgets that apply to the agent, in their current period; one with "
        "blocks_new_requests true is why approval requests are refused (budget_exceeded)."
    )

    class Meta(AgentSerializer.Meta):
        fields = [*AgentSerializer.Meta.fields, "api_key", "budgets"]

    @extend_schema_field(BudgetStateSerializer(many=True))
    def get_budgets(self, agent: Agent) -> list[dict[str, Any]]:
        return [state.as_json() for state in agent_states(agent)]
