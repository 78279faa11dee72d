"""Budget enforcement on the agent hot path: admit a new approval request or refuse it.

`approvals.services.create_request` calls `reserve_for_request` inside its transaction, before
its audit append. For each enforced budget of the agent, the request's estimated cost is held
in the current window with one conditional UPDATE (`... WHERE spent + reserved + estimate <=
limit`), so simultaneous admissions cannot together pass a limit: the database queues them on
the window row and each sees the others' reservations. A request without an estimate holds
nothing, so one read of the windows decides it without locking them. An agent without budgets
costs no query (the budgets are cached per process).

Reconciliation: a reservation is given back when the request ends without approval (rejected,
expired, cancelled), or when the agent reports the actual cost of the work with the request's
id as `task_id` (the cost replaces the estimate). Otherwise it lapses with its window.

A budget in `ask` mode (SPEC §5) never refuses: past its limit the check asks for a person
(`budget_exceeded`, require approval), a request is admitted without a hold where the estimate
does not fit, and approving such a request raises the window's cap (`raise_for_approval`) by the
request's estimate, or by a tenth of the limit when it has none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Sum
from django.utils import timezone

from agents.models import Agent
from budgets import ledger, selectors
from budgets.models import Budget, Reservation

if TYPE_CHECKING:
    from approvals.models import ApprovalRequest


class BudgetExceeded(Exception):
    """An enforced budget of the agent is used up; the message says which and until when."""


def reserve_for_request(request: ApprovalRequest) -> str:
    """Admit a just-created request against its agent's budgets, or raise BudgetExceeded.
    Returns why a budget in ask mode needs a person for it, or "". Must run inside the
    transaction that creates the request, before its audit append."""
    rules = [rule for rule in selectors.rules_for(request.agent) if rule.enforce or rule.ask]
    if not rules:
        return ""
    now = timezone.now()
    amount = Decimal(request.estimated_cost_cents or 0)
    asking = ""
    if not amount:
        # Nothing to hold, so nothing to lock: one read of the windows decides.
        for state in selectors.states(rules, now):
            if state.blocking:
                raise BudgetExceeded(state.explain())
            if state.asking and not asking:
                asking = state.explain()
        return asking
    held: list[Reservation] = []
    for rule in rules:
        window = rule.window(now)
        window_id = ledger.try_reserve(rule.id, window, rule.limit_cents, amount)
        if window_id is None:
            if not Budget.objects.filter(pk=rule.id).exists():
                continue  # deleted since this process cached it
            (state,) = selectors.states([rule], now)
            if rule.ask:
                # Admitted without a hold: a person decides, and approving raises the cap.
                asking = asking or _passes(state, amount)
                continue
            # The caller's transaction rolls back, and with it the reservations made above.
            raise BudgetExceeded(state.explain())
        held.append(
            Reservation(
                request_id=request.pk, window_id=window_id, amount_cents=amount, created_at=now
            )
        )
    Reservation.objects.bulk_create(held)
    return asking


def _passes(state: selectors.BudgetState, amount: Decimal) -> str:
    if state.exhausted:
        return state.explain()
    return (
        f"The estimate, {amount}¢, is more than the {state.left_cents:.2f}¢ left in the "
        f"{state.rule.label} this period."
    )


@dataclass(frozen=True)
class Raise:
    """A budget's cap raised for its current window by a person's approval (ask mode)."""

    budget_id: int
    label: str
    window_start: datetime
    amount_cents: Decimal
    raised_cents: Decimal  # the window's raise in all, this one included


def raise_for_approval(request: ApprovalRequest) -> list[Raise]:
    """A person approved `request`, which a budget in ask mode asked them about: raise the cap
    of each ask-mode budget of its agent that holds nothing for it, for the current window, by
    the request's estimate (or a tenth of the limit without one; SPEC §5), and hold the
    estimate there for this request (a reservation, as an admitted request's: its cost report
    claims it), so the room an approval made is this request's, not the next call's. Each
    approval raises by its own estimate. Not in a later window that has room for it: that
    period never asked. Call it in the approving transaction, before its audit append; the
    caller audits what it returns."""
    rules = [rule for rule in selectors.rules_for(request.agent) if rule.ask]
    if not rules:
        return []
    now = timezone.now()
    estimate = Decimal(request.estimated_cost_cents or 0)
    held = set(
        Reservation.objects.filter(request_id=request.pk, released_at__isnull=True).values_list(
            "window__budget_id", "window__window_start"
        )
    )
    raises = []
    for state in selectors.states(rules, now):
        if (state.rule.id, state.window.start) in held:
            continue  # it fit when it was asked: admitted with its estimate held
        asked_here = state.window.start <= request.created_at < state.window.end
        if not (asked_here or state.exhausted or estimate > state.left_cents):
            continue
        amount = estimate or Decimal(state.rule.limit_cents) / 10
        answer = ledger.raise_cap(state.rule.id, state.window, amount, hold=estimate)
        if answer is None:
            continue  # deleted since this process cached it
        window_id, raised = answer
        if estimate:
            Reservation.objects.create(
                request_id=request.pk, window_id=window_id, amount_cents=estimate, created_at=now
            )
        raises.append(Raise(state.rule.id, state.rule.label, state.window.start, amount, raised))
    return raises


@dataclass(frozen=True)
class Room:
    """What an enforced (or ask-mode) budget has left in its current window for a new action."""

    budget_id: int
    window_start: datetime
    left_cents: Decimal
    label: str
    ask: bool = False  # past it, a person decides instead of a refusal


@dataclass(frozen=True)
class Assessment:
    refusal: str  # why an enforced budget refuses the action, or ""
    rooms: tuple[Room, ...]  # every enforced or ask budget's room, for holding the estimate
    ask: str = ""  # why an ask-mode budget wants a person to decide the action, or ""


def assess(agent: Agent, estimated_cost_cents: int | None, params_sha256: str = "") -> Assessment:
    """The guardrails check's budget step (SPEC §6, step 2): an enforced budget of `agent`
    refuses a new action when it is used up or when the action's estimate would take it past
    its limit; a budget in ask mode asks for a person then, except for the very call a person
    approved past it (`params_sha256`, its approved hash), which may use what its approval
    holds. Only a read: the check holds its estimate for a while in Redis (the rooms say how
    much each budget has left; `guardrails.counters`), and an approval request reserves it here
    when it is created."""
    rules = [rule for rule in selectors.rules_for(agent) if rule.enforce or rule.ask]
    if not rules:
        return Assessment("", ())
    amount = Decimal(estimated_cost_cents or 0)
    rooms = []
    asking = ""
    for state in selectors.states(rules):
        left = state.left_cents
        rooms.append(
            Room(state.rule.id, state.window.start, left, state.rule.label, state.rule.ask)
        )
        if not (state.exhausted or amount > left):
            continue
        if not Budget.objects.filter(pk=state.rule.id).exists():
            rooms.pop()
            continue  # deleted since this process cached it
        if state.rule.ask:
            own = _approved_hold(agent, state, params_sha256)
            if (
                own
                and state.spent_cents + state.reserved_cents - own < state.limit_cents
                and (amount <= left + own)
            ):
                # The approved call itself: the room its approval made is its own.
                rooms[-1] = replace(rooms[-1], left_cents=left + own)
                continue
            rooms.pop()  # asks already: nothing to hold against it
            asking = asking or _passes(state, amount)
            continue
        return Assessment(_passes(state, amount), tuple(rooms), asking)
    return Assessment("", tuple(rooms), asking)


def _approved_hold(agent: Agent, state: selectors.BudgetState, params_sha256: str) -> Decimal:
    """What the window holds for `agent`'s approved requests of exactly this call (their
    approved hash), their costs not yet reported: an ask budget's approval made that room."""
    if not params_sha256:
        return Decimal(0)
    held = Reservation.objects.filter(
        window__budget_id=state.rule.id,
        window__window_start=state.window.start,
        released_at__isnull=True,
        request__agent=agent,
        request__status="approved",
        request__current_params_sha256=params_sha256,
    ).aggregate(total=Sum("amount_cents"))["total"]
    return Decimal(held or 0)


def refusal(agent: Agent, estimated_cost_cents: int | None) -> str:
    """Why an enforced budget of `agent` refuses a new action now, or "" (`assess`)."""
    return assess(agent, estimated_cost_cents).refusal


def claim_reservations(
    request_id: uuid.UUID | list[uuid.UUID], agent: Agent | None = None
) -> list[tuple[int, datetime, int, Decimal]]:
    """Mark the request's (or requests') outstanding reservations released and return (budget
    id, window start, window id, amount) for each, in budget order (the order windows are
    locked in by everyone). Each is claimed once, even by concurrent callers: the rows are
    locked, and a second caller finds them released."""
    ids = request_id if isinstance(request_id, list) else [request_id]
    outstanding = Reservation.objects.select_for_update(of=("self",)).filter(
        request_id__in=ids, released_at__isnull=True
    )
    if agent is not None:
        outstanding = outstanding.filter(request__agent=agent)
    claimed = list(
        outstanding.order_by("window__budget_id").values_list(
            "pk", "window__budget_id", "window__window_start", "window_id", "amount_cents"
        )
    )
    if claimed:
        Reservation.objects.filter(pk__in=[row[0] for row in claimed]).update(
            released_at=timezone.now()
        )
    return [(row[1], row[2], row[3], row[4]) for row in claimed]


def release_for_request(request_id: uuid.UUID | list[uuid.UUID]) -> None:
    """Give back a request's (or requests') reservations: it ended without approval.
    Idempotent."""
    for _budget_id, _start, window_id, amount in claim_reservations(request_id):
        ledger.give_back(window_id, amount)
