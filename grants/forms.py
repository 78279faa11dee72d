"""The standing-approval choice on the request page's Approve form, and the revoke form."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django import forms

from grants import rules
from grants.models import GrantKind
from grants.services import GrantTerms

NONE = "none"
LIFETIMES = [
    ("3600", "1 hour"),
    ("28800", "8 hours"),
    ("86400", "24 hours"),
    (str(int(rules.MAX_LIFETIME.total_seconds())), "7 days"),
]
# How much of an argument's value the form shows next to its checkbox.
SHOWN_CHARS = 80


class GrantForm(forms.Form):
    """Also allow calls like this one again: none (the default: a form without these fields,
    like the inbox's quick approve, grants nothing), this exact call, or this action with the
    chosen top-level arguments pinned (a path-like one may be pinned to a prefix instead of its
    value)."""

    kind = forms.ChoiceField(
        choices=[
            (NONE, "No, only this request"),
            (GrantKind.EXACT, "This exact call again"),
            (GrantKind.PINNED, "This action again, with the arguments ticked below fixed"),
        ],
        required=False,
        initial=NONE,
        widget=forms.RadioSelect,
        label="What may run again without asking",
    )
    pin = forms.MultipleChoiceField(
        choices=[], required=False, widget=forms.CheckboxSelectMultiple, label="Fixed arguments"
    )
    lifetime = forms.ChoiceField(choices=LIFETIMES, initial="86400", required=False, label="For")
    max_uses = forms.IntegerField(
        min_value=1,
        max_value=rules.MAX_USES,
        required=False,
        label="At most this many calls",
        help_text="Leave empty for any number within the time.",
    )

    def __init__(self, *args: Any, params: Mapping[str, Any], **kwargs: Any) -> None:
        kwargs.setdefault("prefix", "grant")
        super().__init__(*args, **kwargs)
        self.params = params
        self.fields["pin"].choices = [(key, key) for key in params]  # type: ignore[attr-defined]
        if not params:  # nothing to pin
            self.fields["kind"].choices = self.fields["kind"].choices[:2]  # type: ignore[attr-defined]
        for key in self.path_keys:
            self.fields[f"under_{key}"] = forms.CharField(
                required=False,
                max_length=1000,
                label=f"{key} under",
                help_text="A folder or site the value lies in; empty: exactly this value.",
            )

    @property
    def path_keys(self) -> list[str]:
        """The arguments that may be pinned to a prefix: path-like ones with text values."""
        return [k for k in rules.PATH_KEYS if isinstance(self.params.get(k), str)]

    def pin_rows(self) -> list[dict[str, Any]]:
        """Per argument: its checkbox, its value (shortened) and, for a path-like one, the
        prefix field (the template lays them out together)."""
        rows = []
        for box in self["pin"]:
            key = box.data["value"]
            shown = json.dumps(self.params.get(key), ensure_ascii=False)
            if len(shown) > SHOWN_CHARS:
                shown = shown[: SHOWN_CHARS - 1] + "…"
            under = self[f"under_{key}"] if key in self.path_keys else None
            rows.append({"box": box, "key": key, "value": shown, "under": under})
        return rows

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind") or NONE
        if kind == NONE:
            # Nothing is granted: what else the form holds does not matter.
            for name in [name for name in self.errors if name != "kind"]:
                del self.errors[name]
            return cleaned
        if not cleaned.get("lifetime"):
            self.add_error("lifetime", "Choose for how long.")
        if kind == GrantKind.PINNED and not cleaned.get("pin"):
            self.add_error("pin", "Tick at least one argument to fix.")
        return cleaned

    @property
    def chosen(self) -> bool:
        return self.is_bound and self.data.get(self.add_prefix("kind"), NONE) not in ("", NONE)

    def terms(self) -> GrantTerms | None:
        """What was chosen (None: no grant). Call after `is_valid()`."""
        kind = self.cleaned_data.get("kind") or NONE
        if kind == NONE:
            return None
        pins = {}
        if kind == GrantKind.PINNED:
            for key in self.cleaned_data["pin"]:
                pins[key] = (self.cleaned_data.get(f"under_{key}") or "").strip()
        return GrantTerms(
            kind=kind,
            pins=pins,
            lifetime=timedelta(seconds=int(self.cleaned_data["lifetime"])),
            max_uses=self.cleaned_data.get("max_uses"),
        )


class RevokeForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500, label="Why (optional)")
    next = forms.CharField(required=False, max_length=500, widget=forms.HiddenInput)
