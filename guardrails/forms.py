"""Forms of the policies pages: the violations filter (GET), the simulator (GET), and the admin's
policy form, which checks a policy exactly as the policy file does."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from agents.models import Agent
from audit.forms import DateTimeLocalInput
from guardrails import policyfile
from guardrails.models import Policy
from guardrails.rules import SEVERITY
from oversight.fields import params_problem
from oversight.text import CONTROL_MESSAGE, has_control_characters

# Every code a violation can carry (the deciding reason of a deny).
VIOLATION_CODES = sorted(SEVERITY)


class AgentByName(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.name)


class ViolationFilterForm(forms.Form):
    agent = AgentByName(
        queryset=Agent.objects.order_by("name"),
        to_field_name="name",
        required=False,
        empty_label="All agents",
    )
    action = forms.CharField(required=False, max_length=200)
    code = forms.ChoiceField(
        label="Reason",
        required=False,
        choices=[("", "All reasons"), *((code, code) for code in VIOLATION_CODES)],
    )
    since = forms.DateTimeField(label="From", required=False, widget=DateTimeLocalInput())
    until = forms.DateTimeField(label="To", required=False, widget=DateTimeLocalInput())

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("“From” must be before “To”.")
        return cleaned


class SimulatorForm(forms.Form):
    action = forms.CharField(
        max_length=200,
        widget=forms.TextInput(attrs={"list": "policy-names", "autocomplete": "off"}),
    )
    params = forms.CharField(
        label="Arguments (JSON)",
        required=False,
        initial="{}",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "mono"}),
    )
    agent = AgentByName(
        queryset=Agent.objects.order_by("name"),
        to_field_name="name",
        required=False,
        empty_label="Any agent (no team, no budget)",
        help_text="Its own and its team's policies, budgets, status and this hour's rate count.",
    )
    confidence = forms.FloatField(required=False, min_value=0, max_value=1)
    estimated_cost_cents = forms.IntegerField(
        label="Estimated cost (¢)", required=False, min_value=0, max_value=10**12
    )

    def clean_action(self) -> str:
        action = self.cleaned_data["action"].strip()
        if has_control_characters(action):
            raise forms.ValidationError(CONTROL_MESSAGE)
        return action

    def clean_params(self) -> dict[str, Any]:
        text = self.cleaned_data.get("params") or "{}"
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('The arguments are a JSON object, e.g. {"path": "/x"}.')
        problem = params_problem(value)
        if problem:
            raise forms.ValidationError(problem)
        return value


class LinesField(forms.CharField):
    """A list of strings, one per line (patterns begin with `[` often enough that reading
    JSON here would be a guess)."""

    widget = forms.Textarea(attrs={"rows": 4, "class": "mono", "spellcheck": "false"})

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return str(value or "")

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [line.strip() for line in text.splitlines() if line.strip()]


class PolicyAdminForm(forms.ModelForm):
    forbidden_patterns = LinesField(
        required=False,
        help_text="One RE2 regular expression per line, matched case-insensitively against "
        "every string in the arguments; lookarounds and backreferences are not supported.",
    )
    allowed_resources = LinesField(
        required=False,
        help_text="One prefix per line for the path, file_path and resource arguments "
        "(empty: any).",
    )

    class Meta:
        model = Policy
        fields = list(policyfile.FIELDS)  # the policy file's fields, in its order

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        fields = self.policy_fields()
        problems = policyfile.setting_problems(fields, agent_names=None)
        for problem in problems:
            name, _, message = problem.partition(": ")
            target = name if name in self.fields and message else None
            self.add_error(target, message if target else problem)
        return cleaned

    def policy_fields(self) -> dict[str, Any]:
        """The form's values in the policy file's form (what `save_policy` takes)."""
        data = self.cleaned_data
        agent = data.get("agent")
        return {
            "name": (data.get("name") or "").strip(),
            "scope": data.get("scope"),
            "team": (data.get("team") or "").strip(),
            "agent": agent.name if agent else "",
            "description": data.get("description") or "",
            "category": data.get("category"),
            "risk_level": data.get("risk_level"),
            "requires_approval": bool(data.get("requires_approval")),
            "forbidden_patterns": data.get("forbidden_patterns") or [],
            "allowed_resources": data.get("allowed_resources") or [],
            "max_cost_cents": data.get("max_cost_cents"),
            "rate_limit_per_hour": data.get("rate_limit_per_hour"),
            "sensitive": bool(data.get("sensitive")),
            "params_schema": data.get("params_schema"),
            "enabled": bool(data.get("enabled")),
        }
