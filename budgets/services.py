"""Every state change of the budgets app: record a cost, set a budget, save a price.

`record_cost` is the ingestion path (`POST /api/v1/costs`). It computes the cost with the price
version in force, stores it with that version, and adds it to the current window of every
budget that applies to the agent with one atomic UPDATE each (`budgets.ledger`), so concurrent
reports never lose an update. The new total that UPDATE returns includes every earlier report,
so exactly one report sees each threshold crossed; the alert row's unique constraint backs that
up. Alerts are audited in the same transaction and notified on commit. Cost reports are not
audited one by one: they are records in their own right, and the audit append lock would
serialise ingestion.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from agents.models import Agent
from audit.events import EventType
from audit.models import SUBJECT_ID_LENGTH
from audit.services import record_event
from budgets import admission, ledger, periods, pricing, selectors
from budgets.models import (
    DEFAULT_THRESHOLDS,
    UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY,
    Alert,
    AlertEmail,
    AlertKind,
    Budget,
    CostRecord,
    Mode,
    ModelPrice,
    Period,
    Scope,
)

MAX_THRESHOLD = 1000  # percent: alerting at 10x the limit is the most anyone needs


class IdempotencyKeyReused(Exception):
    """The same Idempotency-Key came with a different report."""

    MESSAGE = "This Idempotency-Key was used for a different cost report; use a new key."

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message)


def key_was_used(*, agent: Agent, idempotency_key: str) -> bool:
    return CostRecord.objects.filter(agent=agent, idempotency_key=idempotency_key).exists()


@dataclass(frozen=True)
class CostOutcome:
    record: CostRecord
    budgets: list[selectors.BudgetState]
    replayed: bool = False


# --- ingestion -----------------------------------------------------------------------------------


def record_cost(
    *,
    agent: Agent,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    task_id: str = "",
    success: bool = True,
    idempotency_key: str = "",
    occurred_at: datetime | None = None,
) -> CostOutcome:
    """Record one LLM call and add its cost to the agent's budgets (SPEC §5).

    An unknown model is recorded at zero cost, flagged, and alerted once per agent, model and
    day (for a few models per agent and day at most). A `task_id` equal to one of the agent's
    approval requests releases that request's reserved estimate: the actual cost replaces it.
    With an `idempotency_key`, a retried report returns the first record (`replayed`); the same
    key with a different report raises `IdempotencyKeyReused`. `occurred_at` (default now) is
    for imports and the demo seed: the API always records the time of the report.
    """
    fields: dict[str, Any] = {
        "model": model.strip(),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached_input_tokens,
        "task_id": task_id,
        "success": success,
    }
    if idempotency_key:
        first = CostRecord.objects.filter(agent=agent, idempotency_key=idempotency_key).first()
        if first is not None:
            return _replay(first, fields)
    now = occurred_at or timezone.now()
    price = pricing.price_for(model, now)
    cost = pricing.cost_cents(
        price, pricing.Tokens(input_tokens, output_tokens, cached_input_tokens)
    )
    rules = selectors.rules_for(agent)
    try:
        with transaction.atomic():
            record = CostRecord.objects.create(
                agent=agent,
                cost_cents=cost,
                price=price,
                unknown_model=price is None,
                idempotency_key=idempotency_key,
                created_at=now,
                **fields,
            )
            states = _add_to_budgets(agent, rules, record, now)
    except IntegrityError:
        # A concurrent retry with the same key won the insert.
        first = CostRecord.objects.filter(agent=agent, idempotency_key=idempotency_key).first()
        if not idempotency_key or first is None:
            raise
        return _replay(first, fields)
    return CostOutcome(record=record, budgets=states)


def _add_to_budgets(
    agent: Agent, rules: tuple[selectors.Rule, ...], record: CostRecord, now: datetime
) -> list[selectors.BudgetState]:
    released = {
        (budget_id, start): (window_id, amount)
        for budget_id, start, window_id, amount in _claim_task_reservations(agent, record.task_id)
    }
    states = []
    crossed: list[tuple[selectors.BudgetState, int]] = []
    for rule in rules:  # in budget-id order, like every writer of windows (no lock cycles)
        window = rule.window(now)
        _, given_back = released.pop((rule.id, window.start), (0, Decimal(0)))
        added = ledger.add_spend(rule.id, window, record.cost_cents, given_back)
        if added is None:
            continue  # deleted since this process cached it
        _, spent, reserved = added
        state = selectors.BudgetState(rule, window, spent, reserved)
        states.append(state)
        before = spent - record.cost_cents
        for threshold in rule.thresholds:
            line = Decimal(rule.limit_cents) * threshold / 100
            if before < line <= spent:
                crossed.append((state, threshold))
    # Reservations held in an earlier window (the work ran past a period boundary).
    for window_id, amount in released.values():
        ledger.give_back(window_id, amount)
    # Audit appends come last: they hold the chain's lock until commit.
    for state, threshold in crossed:
        _fire_threshold(state, threshold, now)
    if record.unknown_model:
        _fire_unknown_model(agent, record, now)
    return states


def _claim_task_reservations(
    agent: Agent, task_id: str
) -> list[tuple[int, datetime, int, Decimal]]:
    """A task_id that names one of the agent's approval requests reconciles its estimate."""
    try:
        request_id = uuid.UUID(task_id)
    except ValueError:
        return []
    return admission.claim_reservations(request_id, agent)


def _replay(first: CostRecord, fields: dict[str, Any]) -> CostOutcome:
    if any(getattr(first, name) != value for name, value in fields.items()):
        raise IdempotencyKeyReused()
    return CostOutcome(record=first, budgets=selectors.agent_states(first.agent), replayed=True)


# --- alerts --------------------------------------------------------------------------------------


def _fire_threshold(state: selectors.BudgetState, threshold: int, now: datetime) -> None:
    rule = state.rule
    message = (
        f"{rule.label[0].upper()}{rule.label[1:]} reached {threshold}%: "
        f"{selectors.dollars(state.spent_cents)} of {selectors.dollars(rule.limit_cents)} "
        f"(period from {state.window.start:%Y-%m-%d %H:%M} UTC)."
    )
    _fire(
        Alert(
            kind=AlertKind.THRESHOLD,
            budget_id=rule.id,
            window_start=state.window.start,
            threshold=threshold,
            message=message,
            created_at=now,
        ),
        subject=("budget", str(rule.id)),
        payload={
            "kind": AlertKind.THRESHOLD,
            "period": rule.period,
            "window_start": state.window.start,
            "threshold": threshold,
            # As the API writes money: a fixed-point string, exact (never a binary float).
            "spent_cents": selectors.money(state.spent_cents),
            "limit_cents": rule.limit_cents,
        },
    )


def _fire_unknown_model(agent: Agent, record: CostRecord, now: datetime) -> None:
    """Alert an unknown model once per agent and day, and at most
    UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY models per agent and day, however many reports come
    in at once: the constraints on (agent, model, day) and on the alert's ordinal among the
    agent's that day decide, not this read."""
    day = periods.window_for(Period.DAILY, now)
    model = pricing.normalise(record.model)[:200]
    for _ in range(UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY):
        alerted = list(
            Alert.objects.filter(
                kind=AlertKind.UNKNOWN_MODEL, agent=agent, window_start=day.start
            ).values_list("model", flat=True)
        )
        ordinal = len(alerted) + 1
        if model in alerted or ordinal > UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY:
            return
        message = (
            f"Agent {agent.name} reported calls to {model!r}, which has no price: they are "
            "recorded at zero cost until an admin adds one."
        )
        if ordinal == UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY:
            message += (
                f" That makes {ordinal} unknown models from this agent today: further unknown "
                "models from this agent today are not alerted; see its cost records."
            )
        alert = Alert(
            kind=AlertKind.UNKNOWN_MODEL,
            agent=agent,
            window_start=day.start,
            model=model,
            ordinal=ordinal,
            message=message,
            created_at=now,
        )
        # A name the schema allows (200 characters) can be longer than a subject's id: the id
        # is cut, the details keep the whole name. Refusing the report instead would drop a cost
        # that was spent (SPEC §5: an unknown model is recorded and alerted, not dropped).
        subject = ("model", model[:SUBJECT_ID_LENGTH])
        payload = {"kind": AlertKind.UNKNOWN_MODEL, "model": model, "agent": agent.name}
        if _fire(alert, subject=subject, payload=payload):
            return
        # A concurrent report took this ordinal: for this model (the next read returns), or
        # for another one (then this one takes the next ordinal).


def _fire(alert: Alert, *, subject: tuple[str, str], payload: dict[str, Any]) -> bool:
    """Insert the alert unless it fired already; only the inserter audits and notifies."""
    try:
        with transaction.atomic():
            alert.save(force_insert=True)
    except IntegrityError:
        return False
    record_event(event_type=EventType.BUDGET_ALERT, subject=subject, payload=payload)
    # The outbox: beat's sweep emails it after commit (never for a rolled-back alert).
    AlertEmail.objects.create(alert=alert)
    return True


# --- configuration -------------------------------------------------------------------------------


def _forget(cache_clear: Callable[[], None]) -> None:
    """This process sees its own change at once, and again after commit (so a reader that
    cached the old state meanwhile does not keep it); other processes within seconds."""
    cache_clear()
    transaction.on_commit(cache_clear)


def clean_thresholds(thresholds: list[int] | None) -> list[int]:
    if thresholds is None:
        return list(DEFAULT_THRESHOLDS)
    if not thresholds or any(
        isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= MAX_THRESHOLD
        for t in thresholds
    ):
        raise ValidationError(f"Whole percentages from 1 to {MAX_THRESHOLD}, e.g. 80,95,100.")
    return sorted(set(thresholds))


def _describe(budget: Budget) -> dict[str, Any]:
    return {
        "scope": budget.scope,
        "agent": budget.agent.name if budget.agent else None,
        "team": budget.team,
        "period": budget.period,
        "limit_cents": budget.limit_cents,
        "thresholds": budget.thresholds,
        "mode": budget.mode,
    }


@transaction.atomic
def set_budget(
    *,
    scope: str,
    period: str,
    limit_cents: int,
    agent: Agent | None = None,
    team: str = "",
    thresholds: list[int] | None = None,
    mode: str = Mode.ENFORCE,
    actor: User | None = None,
    budget: Budget | None = None,
) -> Budget:
    """Create or update the budget of a target (an agent, a team, everything) and period.

    Without `budget`, the target's existing budget for the period is updated if there is one
    (what `manage.py set_budget` does); with it, that budget is changed (the admin form).
    Spend so far is kept: it belongs to the period windows, not to the limit.
    """
    errors: dict[str, list[str]] = {}
    if scope not in Scope.values:
        errors["scope"] = [f"Choose from {', '.join(Scope.values)}."]
    if period not in Period.values:
        errors["period"] = [f"Choose from {', '.join(Period.values)}."]
    if mode not in Mode.values:
        errors["mode"] = [f"Choose from {', '.join(Mode.values)}."]
    if isinstance(limit_cents, bool) or not isinstance(limit_cents, int) or limit_cents < 1:
        errors["limit_cents"] = ["A whole number of cents, at least 1."]
    team = team.strip()
    if scope == Scope.AGENT and agent is None:
        errors["agent"] = ["An agent budget needs an agent."]
    if scope == Scope.TEAM and not team:
        errors["team"] = ["A team budget needs a team name."]
    try:
        clean = clean_thresholds(thresholds)
    except ValidationError as exc:
        errors["thresholds"] = exc.messages
    if errors:
        raise ValidationError(errors)
    target = {
        "scope": scope,
        "agent": agent if scope == Scope.AGENT else None,
        "team": team if scope == Scope.TEAM else "",
        "period": period,
    }
    if budget is None:
        budget = Budget.objects.select_for_update().filter(**target).first()
    previous = _describe(budget) if budget is not None and budget.pk else None
    if budget is None:
        budget = Budget(**target)
    for name, value in target.items():
        setattr(budget, name, value)
    budget.limit_cents = limit_cents
    budget.thresholds = clean
    budget.mode = mode
    try:
        with transaction.atomic():
            budget.save()
    except IntegrityError:
        raise ValidationError(
            {"period": ["This target has a budget for that period already; change that one."]}
        ) from None
    _forget(selectors.forget_budgets)
    record_event(
        event_type=EventType.BUDGET_CHANGED,
        actor=actor,
        subject=budget,
        payload={"from": previous, "to": _describe(budget)},
    )
    return budget


@transaction.atomic
def delete_budget(*, budget: Budget, actor: User | None = None) -> None:
    """Remove a budget (its windows and alerts go with it; cost records stay)."""
    described = _describe(budget)
    subject = ("budget", str(budget.pk))
    budget.delete()
    _forget(selectors.forget_budgets)
    record_event(
        event_type=EventType.BUDGET_CHANGED,
        actor=actor,
        subject=subject,
        payload={"from": described, "to": None},
    )


@transaction.atomic
def save_price(*, price: ModelPrice, actor: User | None = None) -> ModelPrice:
    """Add a price version (or correct one no cost has used yet: used versions never change,
    so history is never recomputed; a new price is a new version with a later start)."""
    price.model = pricing.normalise(price.model)
    if price.pk and CostRecord.objects.filter(price_id=price.pk).exists():
        raise ValidationError(
            "Costs were computed with this price; add a new version with a later start instead."
        )
    price.full_clean()
    price.save()
    _forget(pricing.forget_prices)
    record_event(
        event_type=EventType.PRICE_CHANGED, actor=actor, subject=price, payload=_price(price)
    )
    return price


@transaction.atomic
def delete_price(*, price: ModelPrice, actor: User | None = None) -> None:
    """Delete a price version not yet in force (nothing can have used it); one in force stays,
    as the record of what costs were computed with."""
    locked = ModelPrice.objects.select_for_update().get(pk=price.pk)
    if locked.effective_from <= timezone.now() or CostRecord.objects.filter(price=locked).exists():
        raise ValidationError(
            "This price is in force already; add a new version with a later start instead."
        )
    described = _price(locked)
    subject = ("model_price", str(locked.pk))
    locked.delete()
    _forget(pricing.forget_prices)
    record_event(
        event_type=EventType.PRICE_DELETED, actor=actor, subject=subject, payload=described
    )


def _price(price: ModelPrice) -> dict[str, Any]:
    return {
        "model": price.model,
        "effective_from": price.effective_from,
        "input_cents_per_mtok": price.input_cents_per_mtok,
        "output_cents_per_mtok": price.output_cents_per_mtok,
        "cached_input_cents_per_mtok": price.cached_input_cents_per_mtok,
    }
