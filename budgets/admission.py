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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from django.utils import timezone

from agents.models import Agent
from budgets import ledger, selectors
from budgets.models import Budget, Reservation

if TYPE_CHECKING:
    from approvals.models import ApprovalRequest


class BudgetExceeded(Exception):
    """An enforced budget of the agent is used up; the message says which and until when."""


def reserve_for_request(request: ApprovalRequest) -> None:
    """Admit a just-created request against its agent's budgets, or raise BudgetExceeded.
    Must run inside the transaction that creates the request, before its audit append."""
    rules = [rule for rule in selectors.rules_for(request.agent) if rule.enforce]
    if not rules:
        return
    now = timezone.now()
    amount = Decimal(request.estimated_cost_cents or 0)
    if not amount:
        # Nothing to hold, so nothing to lock: one read of the windows decides.
        for state in selectors.states(rules, now):
            if state.exhausted:
                raise BudgetExceeded(state.explain())
        return
    held: list[Reservation] = []
    for rule in rules:
        window = rule.window(now)
        window_id = ledger.try_reserve(rule.id, window, rule.limit_cents, amount)
        if window_id is None:
            if not Budget.objects.filter(pk=rule.id).exists():
                continue  # deleted since this process cached it
            # The caller's transaction rolls back, and with it the reservations made above.
            (state,) = selectors.states([rule], now)
            raise BudgetExceeded(state.explain())
        held.append(
            Reservation(
                request_id=request.pk, window_id=window_id, amount_cents=amount, created_at=now
            )
        )
    Reservation.objects.bulk_create(held)


@dataclass(frozen=True)
class Room:
    """What an enforced budget has left in its current window for a new action."""

    budget_id: int
    window_start: datetime
    left_cents: Decimal
    label: str


@dataclass(frozen=True)
class Assessment:
    refusal: str  # why an enforced budget refuses the action, or ""
    rooms: tuple[Room, ...]  # every enforced budget's room, for holding the estimate


def assess(agent: Agent, estimated_cost_cents: int | None) -> Assessment:
    """The guardrails check's budget step (SPEC §6, step 2): an enforced budget of `agent`
    refuses a new action when it is used up or when the action's estimate would take it past
    its limit. Only a read: the check holds its estimate for a while in Redis (the rooms say
    how much each budget has left; `guardrails.counters`), and an approval request reserves it
    here when it is created."""
    rules = [rule for rule in selectors.rules_for(agent) if rule.enforce]
    if not rules:
        return Assessment("", ())
    amount = Decimal(estimated_cost_cents or 0)
    rooms = []
    for state in selectors.states(rules):
        left = state.rule.limit_cents - state.spent_cents - state.reserved_cents
        rooms.append(Room(state.rule.id, state.window.start, left, state.rule.label))
        if not (state.exhausted or amount > left):
            continue
        if not Budget.objects.filter(pk=state.rule.id).exists():
            rooms.pop()
            continue  # deleted since this process cached it
        if state.exhausted:
            return Assessment(state.explain(), tuple(rooms))
        message = (
            f"The estimate, {amount}¢, is more than the {left:.2f}¢ left in the "
            f"{state.rule.label} this period."
        )
        return Assessment(message, tuple(rooms))
    return Assessment("", tuple(rooms))


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
