from __future__ import annotations

from rest_framework import serializers

from accounts.models import User
from agents.models import Agent, AgentStatus, ApiKey


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

    class Meta(AgentSerializer.Meta):
        fields = [*AgentSerializer.Meta.fields, "api_key"]
