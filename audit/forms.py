"""The audit page's filter form (a GET form: filters live in the URL, so they can be shared)."""

from __future__ import annotations

from django import forms

from audit.events import EventType
from audit.selectors import EventFilters


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


class EventFilterForm(forms.Form):
    type = forms.ChoiceField(
        label="Event type",
        required=False,
        choices=[("", "All types"), *EventType.choices],
    )
    actor = forms.CharField(
        label="Actor",
        required=False,
        max_length=300,
        widget=forms.TextInput(attrs={"placeholder": "exact name, user:12, agent:3 or system"}),
    )
    subject = forms.CharField(
        label="Subject",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "agent, agent:3, approval_request:42"}),
    )
    since = forms.DateTimeField(label="From", required=False, widget=DateTimeLocalInput())
    until = forms.DateTimeField(label="To", required=False, widget=DateTimeLocalInput())

    def clean(self) -> dict[str, object] | None:
        cleaned = super().clean()
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("“From” must be before “To”.")
        return cleaned

    def filters(self) -> EventFilters:
        """The filters of a valid form."""
        data = self.cleaned_data
        return EventFilters(
            event_type=data.get("type") or "",
            actor=data.get("actor") or "",
            subject=data.get("subject") or "",
            since=data.get("since"),
            until=data.get("until"),
        )
