"""The decision forms on the request page and the inbox's bulk decision, and the inbox filters."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from approvals.binding import canonical_json
from approvals.models import RiskLevel, Urgency
from oversight.fields import MAX_JSON_DEPTH, MAX_PARAMS_BYTES, nested_deeper_than, params_problem


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=5000,
        error_messages={"required": "Say why you reject this request; the agent needs the reason."},
    )


class ApproveForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=5000
    )
    # The hash of the arguments shown on the page: approving binds to what the person saw.
    seen_params_sha256 = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)
    modified_params = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
        required=False,
        help_text="Leave as is to approve the arguments the agent sent.",
    )

    def __init__(self, *args: Any, original: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.original = original
        # The page's script diffs the edited JSON against this as the person types.
        self.fields["modified_params"].widget.attrs["data-original"] = json.dumps(original)

    def clean_modified_params(self) -> dict[str, Any] | None:
        raw = self.cleaned_data["modified_params"].strip()
        if not raw:
            return None
        if len(raw.encode()) > MAX_PARAMS_BYTES:
            raise forms.ValidationError(f"Keep the arguments under {MAX_PARAMS_BYTES} bytes.")
        try:
            value = json.loads(raw, parse_constant=_refuse)
        except (ValueError, RecursionError) as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The arguments must be a JSON object, like the original.")
        if nested_deeper_than(value):
            raise forms.ValidationError(f"The arguments nest deeper than {MAX_JSON_DEPTH} levels.")
        problem = params_problem(value)  # e.g. 1e400 (no JSON number), a lone surrogate
        if problem:
            raise forms.ValidationError(problem)
        # Compared as canonical JSON, not with Python's ==, for which 1 == True == 1.0: an edit
        # from 1 to true is a change, and the approval must bind to it (SPEC §2).
        return None if canonical_json(value) == canonical_json(self.original) else value


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class InboxFilterForm(forms.Form):
    """The inbox's filters, from the page's query string (and the live socket's, so pushed rows
    keep the same filters)."""

    risk = forms.ChoiceField(
        choices=[("", "Any risk"), *RiskLevel.choices], required=False, label="Risk"
    )
    urgency = forms.ChoiceField(
        choices=[("", "Any urgency"), *Urgency.choices], required=False, label="Urgency"
    )
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Agent or action",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "e.g. deploy"}),
    )

    def filters(self) -> dict[str, str]:
        """The valid filters that are set; invalid ones are ignored (a stale link still works)."""
        self.is_valid()
        return {name: value.strip() for name, value in self.cleaned_data.items() if value.strip()}


class PicksField(forms.Field):
    """The inbox rows a bulk decision is for: every posted value of the field, as text."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        return [str(item) for item in value]


class BulkDecisionForm(forms.Form):
    """Approve or reject the picked inbox rows; rejecting needs one reason for all of them."""

    pick = PicksField(
        required=True,
        error_messages={"required": "Select the requests to decide first."},
    )
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("reject", "Reject")])
    reason = forms.CharField(
        required=False,
        max_length=5000,
        label="Reason for rejecting",
        widget=forms.TextInput(attrs={"placeholder": "Reason, if you reject (required)"}),
    )

    def __init__(self, *args: Any, max_picks: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_picks = max_picks

    def clean_pick(self) -> list[str]:
        picks: list[str] = self.cleaned_data["pick"]
        if len(picks) > self.max_picks:
            raise forms.ValidationError(
                f"Decide at most {self.max_picks} requests at a time; you selected {len(picks)}."
            )
        return picks

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("decision") == "reject" and not cleaned.get("reason", "").strip():
            self.add_error(
                "reason", "Say why you reject these requests; each agent receives the reason."
            )
        return cleaned
