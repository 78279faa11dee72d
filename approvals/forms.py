"""The decision forms on the request page."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from approvals.services import MAX_PARAMS_BYTES


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
        return None if value == self.original else value


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
