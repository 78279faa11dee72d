"""Forms on the agents pages: the reason behind a status change, the label of a new key, how a
webhook secret is rotated."""

from __future__ import annotations

from django import forms


class NewKeyForm(forms.Form):
    label = forms.CharField(
        max_length=100,
        required=False,
        label="Label (optional)",
        widget=forms.TextInput(attrs={"placeholder": "e.g. production runner"}),
    )


class StatusForm(forms.Form):
    """One form for every control; `action` names the button pressed."""

    ACTIONS = ("pause", "resume", "disable", "request_reenable", "confirm_reenable")

    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    reason = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class RotateWebhookSecretForm(forms.Form):
    # Ticked when the secret leaked: the replaced one then stops signing at once.
    immediately = forms.BooleanField(required=False)
