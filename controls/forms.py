"""Forms of the autonomy controls on an agent's page (SPEC §4, §6): a level set by hand, overall
or for one category, with the reason the audit trail keeps."""

from __future__ import annotations

from django import forms
from django.conf import settings

from agents.models import AUTONOMY_NAMES, MAX_AUTONOMY
from guardrails.models import Category

# What each level lets the agent do without a person (the table of SPEC §6, in a phrase).
LEVEL_MEANINGS = {
    0: "may not act on its own",
    1: "a person decides every action",
    2: "low risk alone",
    3: "low risk alone; medium at confidence ≥ 0.7",
    4: "low risk alone; medium at confidence ≥ 0.85",
    5: "low and medium alone; high at confidence ≥ 0.95",
}
UNSET = "unset"
OVERALL = ""


def level_label(level: int) -> str:
    return f"{level} · {AUTONOMY_NAMES[level]} — {LEVEL_MEANINGS[level]}"


def _levels() -> list[tuple[str, str]]:
    default = int(settings.OVERSIGHT_DEFAULT_AUTONOMY_LEVEL)
    return [
        ("", "Choose a level"),
        *((str(level), level_label(level)) for level in range(MAX_AUTONOMY + 1)),
        (UNSET, f"None of its own (overall: the default, {default}; a category: overall)"),
    ]


class AutonomyForm(forms.Form):
    """A manager's change of one level: the overall one (category blank) or a category's."""

    category = forms.ChoiceField(
        label="Level of",
        required=False,
        choices=[
            (OVERALL, "The agent overall"),
            *((value, f"Category: {label}") for value, label in Category.choices),
        ],
    )
    # No level is preselected: a form sent without a choice must not set one.
    level = forms.ChoiceField(
        label="New level", choices=_levels, error_messages={"required": "Choose a level."}
    )
    reason = forms.CharField(
        label="Why? (required, kept in the audit trail)",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why the level changes."},
    )

    @property
    def target(self) -> tuple[int | None, str | None]:
        """The (level, category) to set: None for "none of its own", None for overall."""
        raw = self.cleaned_data["level"]
        return (None if raw == UNSET else int(raw)), (self.cleaned_data["category"] or None)


class RaiseForm(forms.Form):
    # The level the page offered to raise to: a stale page (someone changed the level since)
    # must not raise the agent further than the person read.
    to = forms.IntegerField(min_value=1, max_value=MAX_AUTONOMY)
