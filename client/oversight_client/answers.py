"""The answers and errors of the Oversight agent API, as the client returns and raises them,
and the check of a callback's signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

FINAL = frozenset({"approved", "rejected", "expired", "cancelled"})


class OversightError(Exception):
    """An error answer from the API, with its stable `code` and HTTP `status`; `details` holds
    the error's other members (a refused create's `reasons`, say)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.details = details or {}


@dataclass(frozen=True)
class Reason:
    """One reason of a guardrails answer: a stable `code`, a message, and its `effect`."""

    code: str
    message: str
    effect: str
    param: str | None = None
    pattern: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reason:
        return cls(
            code=data["code"],
            message=data["message"],
            effect=data.get("effect", "deny"),
            param=data.get("param"),
            pattern=data.get("pattern"),
        )


@dataclass(frozen=True)
class Decision:
    """The guardrails' answer to `check`: allow, deny or require_approval, and why."""

    decision: str
    reasons: tuple[Reason, ...]
    risk_level: str | None = None
    category: str | None = None
    policy: dict[str, Any] | None = None
    violation_id: int | None = None
    params_sha256: str | None = None
    # The standing approval that allowed the call in a person's place (reason standing_approval).
    grant_id: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        return cls(
            decision=data["decision"],
            reasons=tuple(Reason.from_json(reason) for reason in data.get("reasons", [])),
            risk_level=data.get("risk_level"),
            category=data.get("category"),
            policy=data.get("policy"),
            violation_id=data.get("violation_id"),
            params_sha256=data.get("params_sha256"),
            grant_id=data.get("grant_id"),
            raw=data,
        )

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def denied(self) -> bool:
        return self.decision == "deny"

    @property
    def needs_approval(self) -> bool:
        return self.decision == "require_approval"

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]


class ActionDenied(Exception):
    """The guardrails refuse the action (a check's deny, or a create refused with reasons)."""

    def __init__(self, action: str, reasons: tuple[Reason, ...], violation_id: int | None) -> None:
        first = next((r for r in reasons if r.effect == "deny"), reasons[0] if reasons else None)
        why = f"{first.code}: {first.message}" if first else "refused"
        super().__init__(f"{action} is refused by the guardrails ({why})")
        self.action = action
        self.reasons = reasons
        self.violation_id = violation_id

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]


class ApprovalDenied(Exception):
    """The request ended without approval: rejected, expired or cancelled."""

    def __init__(self, request: ApprovalRequest) -> None:
        reason = request.decision.get("reason") if request.decision else ""
        super().__init__(f"{request.action} was {request.status}: {reason}")
        self.request = request


class ExecutionMismatch(OversightError):
    """The server refused an execution receipt (`409 execution_mismatch`): the arguments reported
    are not the ones approved, or the request was not approved. The outcome is recorded all the
    same (`outcome`), the agent is disabled and the managers are alerted."""

    @property
    def outcome(self) -> Outcome | None:
        shown = self.details.get("outcome")
        return Outcome.from_json(shown) if isinstance(shown, dict) else None


class ApprovalTimeout(Exception):
    """No decision arrived within the time the caller was willing to wait."""


class InvalidSignature(Exception):
    """A callback that cannot be shown to come from Oversight (signature or timestamp wrong or
    missing): do not act on it."""


def verify_callback(
    *,
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a callback Oversight posted to the agent and return its JSON body (the request's
    representation).

    `body` is the raw request body, exactly as received (not re-serialised JSON); `headers` the
    request's headers, any case. `X-Oversight-Signature` lists one or more `sha256=<hex>`
    signatures of `"<X-Oversight-Timestamp>.<body>"`, separated by commas: more than one while
    the agent's webhook secret is being rotated, so either secret is accepted then. A timestamp
    more than `tolerance_seconds` away from now is refused, so a captured callback cannot be
    replayed later."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        timestamp = int(lowered["x-oversight-timestamp"])
        listed = lowered["x-oversight-signature"]
    except (KeyError, ValueError):
        raise InvalidSignature("missing or malformed X-Oversight-* headers") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        raise InvalidSignature("the timestamp is too far from now (a replay?)")
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    expected = f"sha256={mac.hexdigest()}"
    # Every listed signature is compared, each in constant time.
    # As bytes: compare_digest refuses str with non-ASCII characters (an attacker's header).
    wanted = expected.encode()
    if not any(
        hmac.compare_digest(wanted, sig.strip().encode("utf-8", "replace"))
        for sig in listed.split(",")
    ):
        raise InvalidSignature("no signature matches this secret")
    result: dict[str, Any] = json.loads(body)
    return result


def params_sha256(action: str, params: dict[str, Any]) -> str:
    """The argument hash the server computes (canonical JSON of action + params)."""
    canonical = json.dumps(
        {"action": action, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ApprovalRequest:
    id: str
    status: str
    action: str
    params: dict[str, Any]
    params_sha256: str
    url: str
    decision: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApprovalRequest:
        return cls(
            id=data["id"],
            status=data["status"],
            action=data["action"],
            params=data["params"],
            params_sha256=data["params_sha256"],
            url=data["url"],
            decision=data.get("decision"),
            raw=data,
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    @property
    def approved_params(self) -> dict[str, Any]:
        """The arguments to execute: the approver's changes if any, else the original ones.

        Verified against the decision's hash, so a tampered answer cannot slip other
        arguments in.
        """
        if not self.approved or self.decision is None:
            raise ApprovalDenied(self)
        params = self.decision.get("modified_params")
        params = self.params if params is None else params
        if params_sha256(self.action, params) != self.decision["approved_params_sha256"]:
            raise OversightError(
                0, "hash_mismatch", "The approved arguments do not match their hash."
            )
        return params


@dataclass(frozen=True)
class CostReport:
    """A recorded LLM call: its cost in cents (exact) and the agent's budgets after it."""

    id: int
    cost_cents: Decimal
    unknown_model: bool
    budgets: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostReport:
        return cls(
            id=data["id"],
            cost_cents=Decimal(data["cost_cents"]),
            unknown_model=data["unknown_model"],
            budgets=data["budgets"],
            raw=data,
        )

    @property
    def blocked(self) -> bool:
        """True when a budget now refuses the agent's new approval requests."""
        return any(budget["blocks_new_requests"] for budget in self.budgets)


@dataclass(frozen=True)
class Outcome:
    """A recorded outcome (`report_outcome`); with an approval request, its execution receipt:
    `receipt` is `matched` (executed as approved) or `none` (no request named)."""

    id: str
    action: str
    params_sha256: str
    approval_request_id: str | None
    receipt: str
    approved_params_sha256: str
    success: bool
    error: str
    duration_ms: int | None
    cost_cents: Decimal | None
    critical: bool
    created_at: datetime
    consecutive_failures: int
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        cost = data.get("cost_cents")
        return cls(
            id=data["id"],
            action=data["action"],
            params_sha256=data["params_sha256"],
            approval_request_id=data.get("approval_request_id"),
            receipt=data["receipt"],
            approved_params_sha256=data.get("approved_params_sha256") or "",
            success=data["success"],
            error=data.get("error") or "",
            duration_ms=data.get("duration_ms"),
            cost_cents=None if cost is None else Decimal(cost),
            critical=data.get("critical", False),
            created_at=datetime.fromisoformat(data["created_at"]),
            consecutive_failures=data.get("consecutive_failures", 0),
            raw=data,
        )

    @property
    def matched(self) -> bool:
        """Executed exactly what was approved (a receipt the server accepted)."""
        return self.receipt == "matched"


# Not frozen: `receipt` is filled in when the block ends (a block's code has run by then).
@dataclass
class Approval:
    """What a `require_approval` block gets: the decision and the arguments to use; after the
    block, `receipt` is its recorded execution receipt (None when it could not be sent)."""

    request: ApprovalRequest
    params: dict[str, Any]
    receipt: Outcome | None = None


@dataclass
class Clearance:
    """What a `guard` block gets: the arguments to use (the approved ones when a person
    decided), the guardrails' answer, and the approval request if one was needed; after the
    block, `receipt` is the outcome reported for it (None when it could not be sent)."""

    params: dict[str, Any]
    decision: Decision
    request: ApprovalRequest | None = None
    receipt: Outcome | None = None
