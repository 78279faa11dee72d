"""The monitoring page's filters (GET): an agent, a team, the period."""

from __future__ import annotations

from django import forms

from agents.models import Agent
from guardrails.forms import AgentByName

PERIODS = [(7, "Last 7 days"), (14, "Last 14 days"), (30, "Last 30 days"), (90, "Last 90 days")]


class MonitoringFilterForm(forms.Form):
    agent = AgentByName(
        queryset=Agent.objects.order_by("name"),
        to_field_name="name",
        required=False,
        empty_label="All agents",
    )
    team = forms.ChoiceField(required=False, choices=[])
    days = forms.TypedChoiceField(label="Period", choices=PERIODS, coerce=int, required=False)

    def __init__(self, *args: object, teams: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["team"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", "All teams")] + [(team, team) for team in teams]
