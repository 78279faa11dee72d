"""A policy in the policy file's form, every field given, for the guardrails tests."""

from __future__ import annotations

from typing import Any


def policy_fields(**overrides: Any) -> dict[str, Any]:
    """A global, low-risk `read`-category policy allowing everything, with `overrides`."""
    fields: dict[str, Any] = {
        "name": "probe_action",
        "scope": "global",
        "team": "",
        "agent": "",
        "description": "",
        "category": "read",
        "risk_level": "low",
        "requires_approval": False,
        "forbidden_patterns": [],
        "allowed_resources": [],
        "max_cost_cents": None,
        "rate_limit_per_hour": None,
        "sensitive": False,
        "params_schema": None,
        "enabled": True,
    }
    fields.update(overrides)
    return fields
