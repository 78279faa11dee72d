from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import User
from agents.models import AUTONOMY_NAMES, Agent, AgentStatus, ApiKey
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


class AutonomySerializer(serializers.Serializer):
    """The agent's autonomy levels (SPEC §6), read from the agent itself (`source="*"`)."""

    level = serializers.IntegerField(
        source="overall_autonomy",
        min_value=0,
        max_value=5,
        help_text="The overall level, 0 (manual) to 5 (full), for categories without their own.",
    )
    name = serializers.SerializerMethodField(help_text="The level's name, e.g. partial.")
    is_default = serializers.SerializerMethodField(
        help_text="True when the agent has no level of its own and follows the admin's default."
    )
    by_category = serializers.DictField(
        source="autonomy_by_category",
        child=serializers.IntegerField(min_value=0, max_value=5),
        help_text="The categories (write, deploy, ...) with a level of their own; the others "
        "follow `level`.",
    )
    trial_until = serializers.DateTimeField(
        source="autonomy_trial_until",
        allow_null=True,
        help_text="A raise on trial until then: a lowering condition before then reverts it.",
    )

    def get_name(self, agent: Agent) -> str:
        return AUTONOMY_NAMES[agent.overall_autonomy]

    def get_is_default(self, agent: Agent) -> bool:
        return agent.autonomy_level is None


class CircuitBreakerSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        source="breaker_state",
        choices=["closed", "open", "tripped"],
        help_text="open: every check needs a person (failures or rejections in a row); "
        "tripped: it paused the agent. A success or a manager's resume closes it.",
    )
    consecutive_failures = serializers.IntegerField(
        min_value=0, help_text="Failures and rejections in a row."
    )
    opened_at = serializers.DateTimeField(source="breaker_opened_at", allow_null=True)


class AgentMeSerializer(AgentSerializer):
    api_key = ApiKeySerializer(read_only=True)
    budgets = serializers.SerializerMethodField(
        help_text="The budgets that apply to the agent, in their current period; one with "
        "blocks_new_requests true is why approval requests are refused (budget_exceeded)."
    )
    autonomy = AutonomySerializer(source="*", read_only=True)
    circuit_breaker = CircuitBreakerSerializer(source="*", read_only=True)

    class Meta(AgentSerializer.Meta):
        fields = [*AgentSerializer.Meta.fields, "api_key", "budgets", "autonomy", "circuit_breaker"]

    @extend_schema_field(BudgetStateSerializer(many=True))
    def get_budgets(self, agent: Agent) -> list[dict[str, Any]]:
        return [state.as_json() for state in agent_states(agent)]
