"""What a grant covers and what it may stand in for, as pure functions over plain values (no ORM,
no Redis): `grants.services` and `grants.uses` gather the inputs and write the results.

A grant stands in for a person only where nothing but the policy's `requires_approval` flag or
the agent's autonomy level asks for one (`WAIVABLE`). Everything else that makes a check need a
person says something about *this* call or *this* moment that the person who granted could not
have weighed: critical risk, an open circuit breaker, a loop, low confidence, a budget in ask
mode, an unknown action, a rate limit that cannot be counted. Those still go to a person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from approvals.binding import canonical_json
from approvals.models import RiskLevel
from grants.models import GrantKind
from guardrails import matching
from guardrails.rules import ALLOW, REQUIRE_APPROVAL, STEP_APPROVAL, Reason, Verdict
from oversight.fields import unstorable_text

# The reasons a grant may answer in place of a person; see the module's docstring.
WAIVABLE = frozenset({"policy_requires_approval", "autonomy_level"})
# A grant lives at most this long, however many uses it has left.
MAX_LIFETIME = timedelta(days=7)
MAX_USES = 10_000
# Arguments that name what an action touches, which a grant may pin to a prefix (a folder, a
# site) rather than a value: the policies' resource keys, and the usual names of the same thing.
PATH_KEYS = (*matching.RESOURCE_KEYS, "directory", "url", "uri")
STANDING_APPROVAL = "standing_approval"


class GrantProblem(ValueError):
    """Terms a grant may not have, said for the person who chose them."""


class Terms(Protocol):
    """What a grant covers (a `grants.models.Grant` has these)."""

    @property
    def action(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def params_sha256(self) -> str: ...
    @property
    def pins(self) -> Any: ...
    @property
    def risk_level(self) -> str: ...


# --- the check's side --------------------------------------------------------------------------


def waivable(verdict: Verdict) -> bool:
    """Whether a grant may answer this verdict in place of a person: it asks for one, under a
    policy, below critical risk, and only for reasons in `WAIVABLE`."""
    if verdict.decision != REQUIRE_APPROVAL or verdict.policy is None:
        return False
    if verdict.risk_level is None or verdict.risk_level == RiskLevel.CRITICAL:
        return False
    return all(r.code in WAIVABLE for r in verdict.reasons if r.effect != ALLOW)


def covers(
    terms: Terms, *, action: str, params: Mapping[str, Any], digest: str, risk_level: str | None
) -> bool:
    """Whether a grant covers a call: its action (as looked up), at a risk no higher than the
    grant's, and its arguments, exactly (`digest`: the hash of the looked-up action and the
    arguments) or as pinned. Never a critical call, never an unpinned one."""
    if action != terms.action or risk_level is None or risk_level == RiskLevel.CRITICAL:
        return False
    if RiskLevel.rank(risk_level) > RiskLevel.rank(terms.risk_level):
        return False
    if terms.kind == GrantKind.EXACT:
        return bool(terms.params_sha256) and digest == terms.params_sha256
    if terms.kind == GrantKind.PINNED:
        return pins_hold(terms.pins, params)
    return False


def pins_hold(pins: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Every pin holds: the argument is there and equals the pinned value (as canonical JSON:
    `1` is not `true`), or, pinned to a prefix, is a string under it (at a segment boundary,
    never climbing out with `..`: `guardrails.matching.resource_in`)."""
    if not pins:
        return False
    for key, pin in pins.items():
        if key not in params or not isinstance(pin, Mapping):
            return False
        value = params[key]
        if "equals" in pin:
            if canonical_json(value) != canonical_json(pin["equals"]):
                return False
        elif "prefix" in pin:
            prefix = pin["prefix"]
            if key not in PATH_KEYS or not isinstance(value, str) or not isinstance(prefix, str):
                return False
            if not matching.resource_in(value, [prefix]):
                return False
        else:
            return False
    return True


def allowed(
    verdict: Verdict,
    *,
    grant_id: int,
    granted_by: str,
    uses_left: int | None,
    expires_at: datetime,
    simulated: bool = False,
) -> Verdict:
    """The verdict answered by a grant: allow, its reasons kept (they applied) and the grant's
    reason added, which decides."""
    waived = ", ".join(r.code for r in verdict.reasons if r.effect == REQUIRE_APPROVAL)
    left = "" if uses_left is None else f"{uses_left} use{'s' if uses_left != 1 else ''} left, "
    what = "would allow" if simulated else "allows"
    message = (
        f"Standing approval #{grant_id}, granted by {granted_by}, {what} this call in place of a "
        f"person ({waived}); {left}valid until {expires_at:%Y-%m-%d %H:%M} UTC."
    )
    reason = Reason(STANDING_APPROVAL, message, ALLOW, STEP_APPROVAL)
    return replace(verdict, decision=ALLOW, reasons=(*verdict.reasons, reason))


# --- making one --------------------------------------------------------------------------------


def build_pins(params: Mapping[str, Any], chosen: Mapping[str, str]) -> dict[str, Any]:
    """The pins of a grant over the approved arguments: for each chosen key, its approved value,
    or (a path-like key with a prefix given) that prefix, which the approved value must lie
    under. Raises GrantProblem."""
    if not chosen:
        raise GrantProblem("Pin at least one argument: a grant never covers any arguments at all.")
    pins: dict[str, Any] = {}
    for key, prefix in chosen.items():
        if key not in params:
            raise GrantProblem(f"{key} is not among the approved arguments.")
        value = params[key]
        if not prefix:
            pins[key] = {"equals": value}
            continue
        if key not in PATH_KEYS:
            raise GrantProblem(
                f"Only path-like arguments ({', '.join(PATH_KEYS)}) may be pinned to a prefix."
            )
        if not isinstance(value, str):
            raise GrantProblem(f"{key} is not text, so it cannot be pinned to a prefix.")
        problem = prefix_problem(prefix, value)
        if problem:
            raise GrantProblem(f"{key}: {problem}")
        pins[key] = {"prefix": prefix}
    return pins


def prefix_problem(prefix: str, value: str) -> str | None:
    """Why `prefix` may not stand for `value` in a grant, or None: it must hold `value` (at a
    segment boundary) and name something narrower than a whole file system or site scheme."""
    if len(prefix) > matching.MAX_RESOURCE_LENGTH or unstorable_text(prefix):
        return "that prefix cannot be stored."
    _, separator, rest = prefix.partition("://")
    if not (rest if separator else prefix).strip("/"):
        return f"{prefix!r} would cover everything; name a folder or a site."
    if not matching.resource_in(value, [prefix]):
        return f"the approved value does not lie under {prefix!r}."
    return None


def expiry(now: datetime, *, lifetime: timedelta | None, max_uses: int | None) -> datetime:
    """When a grant made now ends: after its lifetime (at most `MAX_LIFETIME`), or, given only a
    number of uses, after `MAX_LIFETIME` anyway. Raises GrantProblem."""
    if lifetime is None and max_uses is None:
        raise GrantProblem("Say for how long, or for how many calls, the grant holds.")
    if max_uses is not None and not 1 <= max_uses <= MAX_USES:
        raise GrantProblem(f"A grant holds for 1 to {MAX_USES} calls.")
    if lifetime is not None and not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise GrantProblem(f"A grant lives at most {MAX_LIFETIME.days} days.")
    return now + (lifetime or MAX_LIFETIME)
