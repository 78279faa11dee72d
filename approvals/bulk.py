"""Bulk decisions from the inbox (issue 24): approve or reject many requests in one action.

A thin door over the same services as the request page: each request is decided by
`approve_request` / `reject_request` in its own transaction, so one refusal (expired
meanwhile, someone else's decision, not this person's to decide) refuses that row only, and
every row reports what happened to it. Requests that need a quorum are not decided in bulk:
two people must each look at a critical request, so a bulk approval would hide the point of
the second look.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from accounts.models import User
from approvals import services
from approvals.inbox import INBOX_LIMIT
from approvals.models import ApprovalRequest

# One inbox page at most: a post beyond it did not come from the page, and deciding it would
# hold the web process for too long.
MAX_PICKS = INBOX_LIMIT

APPROVE = "approve"
REJECT = "reject"

_SHA256 = re.compile(r"[0-9a-f]{64}")

Result = Literal["decided", "voted", "refused"]


@dataclass(frozen=True)
class Pick:
    """One row as the page posted it: `<request id>:<params hash shown on the row>`."""

    raw: str
    request_id: uuid.UUID | None
    seen_params_sha256: str

    @classmethod
    def parse(cls, raw: str) -> Pick:
        ident, _, digest = raw.partition(":")
        try:
            request_id: uuid.UUID | None = uuid.UUID(ident.strip())
        except ValueError:
            request_id = None
        digest = digest.strip().lower()
        return cls(raw=raw, request_id=request_id, seen_params_sha256=digest)


@dataclass(frozen=True)
class RowResult:
    """What happened to one picked row."""

    pick: Pick
    request: ApprovalRequest | None
    result: Result
    message: str
    code: str = ""

    @property
    def label(self) -> str:
        return self.request.action if self.request else self.pick.raw[:80]


def parse_picks(raw: list[str]) -> list[Pick]:
    """The posted rows, each once, in the order posted."""
    seen: set[str] = set()
    picks = []
    for value in raw:
        pick = Pick.parse(value)
        key = str(pick.request_id) if pick.request_id else value
        if key not in seen:
            seen.add(key)
            picks.append(pick)
    return picks


def refusal(request: ApprovalRequest, pick: Pick, decision: str) -> tuple[str, str] | None:
    """Why this door will not decide this row, as (code, message), or None. The services make
    every other check (who may decide, expiry, a stopped agent) when they are called."""
    if request.required_approvals > 1:
        return (
            "quorum",
            f"This {request.risk_level}-risk request needs {request.required_approvals} "
            "approvals from different people; decide it on its own page.",
        )
    if decision == APPROVE and not _SHA256.fullmatch(pick.seen_params_sha256):
        return (
            "arguments_unknown",
            "The page did not say which arguments you were shown; reload the inbox and try again.",
        )
    return None


def decide(
    *, reviewer: User, picks: list[Pick], decision: str, reason: str = ""
) -> list[RowResult]:
    """Approve or reject (with one `reason`) each picked request as `reviewer`, each in its own
    transaction (the service's), and say per row what happened. Never raises for one row."""
    ids = [pick.request_id for pick in picks if pick.request_id is not None]
    found = ApprovalRequest.objects.select_related("agent").in_bulk(ids)
    return [_decide_one(reviewer, pick, found, decision, reason) for pick in picks]


def _decide_one(
    reviewer: User,
    pick: Pick,
    found: dict[uuid.UUID, ApprovalRequest],
    decision: str,
    reason: str,
) -> RowResult:
    if pick.request_id is None:
        return RowResult(pick, None, "refused", "This is not a request id.", "invalid")
    request = found.get(pick.request_id)
    if request is None:
        return RowResult(pick, None, "refused", "There is no such request.", "not_found")
    refused = refusal(request, pick, decision)
    if refused:
        return RowResult(pick, request, "refused", refused[1], refused[0])
    try:
        if decision == APPROVE:
            outcome = services.approve_request(
                request_id=request.pk,
                reviewer=reviewer,
                seen_params_sha256=pick.seen_params_sha256,
            )
        else:
            outcome = services.reject_request(
                request_id=request.pk, reviewer=reviewer, reason=reason
            )
    except services.ApprovalError as exc:
        return RowResult(pick, request, "refused", exc.message, exc.code)
    if outcome.decided:
        return RowResult(
            pick, outcome.request, "decided", f"{outcome.request.status.capitalize()}."
        )
    needed = outcome.request.required_approvals
    return RowResult(
        pick,
        outcome.request,
        "voted",
        f"Your approval is recorded; it needs {needed} approvals from different people.",
    )


@dataclass(frozen=True)
class Summary:
    """The result panel's figures: the rows by what happened, refused ones first."""

    decision: str
    refused: list[RowResult]
    voted: list[RowResult]
    decided: list[RowResult]

    @classmethod
    def of(cls, results: list[RowResult], cleaned: dict[str, object]) -> Summary:
        return cls(
            decision=str(cleaned.get("decision", "")),
            refused=[row for row in results if row.result == "refused"],
            voted=[row for row in results if row.result == "voted"],
            decided=[row for row in results if row.result == "decided"],
        )

    @property
    def total(self) -> int:
        return len(self.refused) + len(self.voted) + len(self.decided)

    @property
    def verb(self) -> str:
        return "approved" if self.decision == APPROVE else "rejected"
