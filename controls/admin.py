"""Admin for the agent controls: read-only. Outcomes come from the agents, alerts and
recommendations from the services; autonomy changes go through the agent's page or
`set_autonomy` (audited)."""

from __future__ import annotations

from django.contrib import admin

from controls.models import AgentAlert, AutonomyRecommendation, Outcome
from oversight.admin import ReadOnlyAdmin


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "agent", "action", "success", "receipt", "critical")
    list_filter = ("success", "receipt", "critical")
    search_fields = ("agent__name", "action")
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(AgentAlert)
class AgentAlertAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "kind", "agent", "team", "message")
    list_filter = ("kind",)


@admin.register(AutonomyRecommendation)
class AutonomyRecommendationAdmin(ReadOnlyAdmin):
    list_display = ("agent", "level", "direction", "outcomes", "successes", "computed_at")
    list_filter = ("direction",)
