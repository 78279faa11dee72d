"""Forms of people's own pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from accounts.models import Tier, User
from accounts.selectors import approvers


class PersonChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.display_name} ({Tier(obj.tier).label.lower()})"


class AwayForm(forms.Form):
    """Away until a time, with someone standing in (issue 24: delegation)."""

    delegate = PersonChoiceField(
        queryset=User.objects.none(),
        label="Who decides for you",
        help_text="Approvers at your tier or above: they may decide everything you may.",
    )
    until = forms.DateTimeField(
        label="Away until",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Your requests reach them until then; it ends by itself.",
    )
    note = forms.CharField(
        required=False, max_length=300, label="Note (optional)", help_text="e.g. on leave"
    )

    def __init__(self, *args: Any, person: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["until"].help_text = (
            f"In {timezone.get_current_timezone_name()} time. Your requests reach them until "
            "then; it ends by itself."
        )
        tiers = Tier.at_or_above(person.tier) if person.tier else []
        field = self.fields["delegate"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = (
            approvers().filter(tier__in=tiers).exclude(pk=person.pk).order_by("tier", "username")
        )
