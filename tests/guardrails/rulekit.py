"""Building blocks of the rules tests: a policy and a call with nothing set but what a test
changes, and the reasons of one code."""

from __future__ import annotations

from typing import Any

from guardrails import rules
from guardrails.rules import Facts


def policy(**fields: Any) -> rules.CompiledPolicy:
    """A low-risk read policy with nothing else set, changed by `fields`."""
    base: dict[str, Any] = {
        "id": 1,
        "name": "read_file",
        "scope": "global",
        "version": 1,
        "version_id": None,
        "category": "read",
        "risk_level": "low",
    }
    return rules.compile_policy(**{**base, **fields})


def facts(**fields: Any) -> Facts:
    """A call of read_file with no arguments by an active agent at the default level."""
    base: dict[str, Any] = {"action": "read_file", "params": {}}
    return Facts(**{**base, **fields})


def reasons_of(verdict: rules.Verdict, code: str) -> list[rules.Reason]:
    return [reason for reason in verdict.reasons if reason.code == code]


SCHEMA = {
    "type": "object",
    "properties": {
        "limit": {"type": "integer"},
        "options": {"type": "object", "properties": {"depth": {"type": "integer"}}},
    },
}
