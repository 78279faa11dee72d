"""Autonomy changes (SPEC §6): one function each, shared by the agent page, `set_autonomy`, the
admin and beat. Each is audited (`autonomy.changed`, with who, why, from and to) and reaches
every process's very next check (the level is a field of the agent: `agents.keyring`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import Role, User
from agents import keyring
from agents.models import AUTONOMY_NAMES, MAX_AUTONOMY, Agent
from audit.events import EventType
from audit.services import record_event
from controls import alerts, autonomy
from controls.models import AlertKind, AutonomyRecommendation, Direction
from guardrails.models import Category

MANUAL = "manual"
RECOMMENDATION = "recommendation"
TRIAL_REVERTED = "trial_reverted"
TRIAL_ENDED = "trial_ended"
LOWERED = "lowered"
RESTORED = "restored"


def _lock(agent: Agent) -> Agent:
    return Agent.objects.select_for_update(of=("self",), no_key=True).get(pk=agent.pk)


def _may_change(actor: User | None) -> None:
    if actor is not None and not (actor.has_role(Role.MANAGER) or actor.has_role(Role.ADMIN)):
        raise PermissionDenied("Only a manager or an admin may change an agent's autonomy.")


def _level(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AUTONOMY:
        raise ValidationError({"level": [f"Use a level from 0 to {MAX_AUTONOMY}."]})
    return value


@transaction.atomic
def set_autonomy(
    *,
    agent: Agent,
    level: int | None,
    category: str | None = None,
    why: str = "",
    actor: User | None = None,
) -> bool:
    """Set the agent's overall level, or a category's own (None: the category follows the
    overall level again; overall, None: the admin's default). False when nothing changed."""
    _may_change(actor)
    if level is not None:
        level = _level(level)
    if category is not None and category not in Category.values:
        raise ValidationError({"category": [f"Choose from {', '.join(Category.values)}."]})
    locked = _lock(agent)
    categories = dict(locked.autonomy_by_category or {})
    if category is None:
        before: int | None = locked.autonomy_level
        if before == level:
            return False
        fields: dict[str, Any] = {"autonomy_level": level}
    else:
        before = categories.get(category)
        if before == level:
            return False
        if level is None:
            categories.pop(category, None)
        else:
            categories[category] = level
        fields = {"autonomy_by_category": categories}
    _apply(locked, fields, source=MANUAL, why=why, actor=actor, category=category, before=before)
    agent.refresh_from_db()
    return True


@transaction.atomic
def apply_recommendation(
    *, agent: Agent, actor: User | None, expected_to: int | None = None
) -> int:
    """A manager's one click on a raise: one level up, as a 30-day trial. Returns the new level.
    Refused when the recommendation is not (or no longer) a raise from the current level, or
    would not raise to `expected_to`, the level the manager's page offered."""
    _may_change(actor)
    locked = _lock(agent)
    recommendation = AutonomyRecommendation.objects.filter(agent=locked).first()
    level = locked.overall_autonomy
    if expected_to is not None and expected_to != level + 1:
        raise ValidationError({"level": ["The page was out of date: look at the level again."]})
    if (
        recommendation is None
        or recommendation.direction != Direction.RAISE
        or recommendation.level != level
    ):
        raise ValidationError(
            {"level": ["The record does not recommend a raise from this level (any more)."]}
        )
    now = timezone.now()
    until = now + autonomy.TRIAL
    _apply(
        locked,
        {
            "autonomy_level": level + 1,
            "autonomy_trial_until": until,
            "autonomy_trial_from": level,
        },
        source=RECOMMENDATION,
        why=" ".join(recommendation.reasons),
        actor=actor,
        before=locked.autonomy_level,
        now=now,
    )
    # The record starts again at the new level: the old recommendation no longer applies.
    AutonomyRecommendation.objects.filter(agent=locked).update(
        direction=Direction.KEEP,
        level=level + 1,
        reasons=[f"Just raised from level {level}: on trial until {until:%Y-%m-%d}."],
    )
    agent.refresh_from_db()
    return level + 1


@transaction.atomic
def lower_autonomy(
    *,
    agent: Agent,
    reasons: list[str],
    expected_level: int | None = None,
    expected_changed_at: datetime | None = None,
) -> int | None:
    """The automatic lowering: one level down at once (a trial reverts to the level it came
    from), the category levels above it capped, the managers told; the replaced levels are kept
    for a manager to restore. Returns the new level (None: at 0 already, or no longer at
    `expected_level`, the level the evidence was weighed at: someone changed it meanwhile)."""
    locked = _lock(agent)
    level = locked.overall_autonomy
    if expected_level is not None and level != expected_level:
        return None
    if expected_changed_at is not None and locked.autonomy_changed_at != expected_changed_at:
        return None  # changed (and back?) since the record was read: the next refresh decides
    trial = locked.autonomy_trial_until is not None and locked.autonomy_trial_from is not None
    target = locked.autonomy_trial_from if trial else level - 1
    if target is None or target < 0 or target >= level:
        return None
    categories = dict(locked.autonomy_by_category or {})
    capped = {name: min(int(own), target) for name, own in categories.items()}
    source = TRIAL_REVERTED if trial else LOWERED
    why = " ".join(reasons)
    _apply(
        locked,
        {
            "autonomy_level": target,
            "autonomy_by_category": capped,
            "autonomy_restorable": {"level": locked.autonomy_level, "categories": categories},
        },
        source=source,
        why=why,
        actor=None,
        before=locked.autonomy_level,
    )
    # The record starts again at the new level: the page shows no stale "lower" meanwhile.
    AutonomyRecommendation.objects.filter(agent=locked).update(
        direction=Direction.KEEP,
        level=target,
        reasons=[f"Just lowered from level {level}: the record starts again."],
    )
    what = "its trial raise is reverted" if trial else "lowered"
    alerts.alert(
        AlertKind.AUTONOMY_LOWERED,
        f"Agent {locked.name}'s autonomy is {what}: level {level} → {target} "
        f"({AUTONOMY_NAMES[target]}). {why} A manager may restore it on the agent's page.",
        agent=locked,
    )
    agent.refresh_from_db()
    return target


@transaction.atomic
def restore_autonomy(*, agent: Agent, actor: User | None, why: str = "") -> bool:
    """Undo an automatic lowering: the levels it replaced. False when there is none to undo."""
    _may_change(actor)
    locked = _lock(agent)
    kept = locked.autonomy_restorable
    if not kept:
        return False
    _apply(
        locked,
        {"autonomy_level": kept.get("level"), "autonomy_by_category": kept.get("categories") or {}},
        source=RESTORED,
        why=why or "Restored by a manager after an automatic lowering.",
        actor=actor,
        before=locked.autonomy_level,
    )
    agent.refresh_from_db()
    return True


def _apply(
    locked: Agent,
    fields: dict[str, Any],
    *,
    source: str,
    why: str,
    actor: User | None,
    before: int | None,
    category: str | None = None,
    now: datetime | None = None,
) -> None:
    """Write the change and audit it: `from` and `to` are the levels that apply (the default's
    or the overall level where none of its own is set, `own_from`/`own_to` say which)."""
    now = now or timezone.now()
    changes: dict[str, Any] = {"autonomy_changed_at": now}
    if category is None:
        # A change of the overall level by hand ends a trial and forgets what a lowering
        # replaced; a category's own level leaves both as they are.
        changes.update(
            autonomy_trial_until=None, autonomy_trial_from=None, autonomy_restorable=None
        )
    changes.update(fields)
    effective_before = locked.autonomy_for(category)
    Agent.objects.filter(pk=locked.pk).update(**changes)
    keyring.KEYRING.changed()
    for name, value in changes.items():
        setattr(locked, name, value)
    if category is None:
        after = locked.autonomy_level
    else:
        after = (locked.autonomy_by_category or {}).get(category)
    record_event(
        event_type=EventType.AUTONOMY_CHANGED,
        actor=actor,
        subject=locked,
        payload={
            "category": category,
            "from": effective_before,
            "to": locked.autonomy_for(category),
            "own_from": before,
            "own_to": after,
            "why": why.strip(),
            "source": source,
            "trial_until": locked.autonomy_trial_until,
        },
    )


@transaction.atomic
def end_trial(*, agent: Agent) -> bool:
    """A trial that ran its 30 days without a lowering: the level stays."""
    locked = _lock(agent)
    until = locked.autonomy_trial_until
    if until is None or until > timezone.now():
        return False
    Agent.objects.filter(pk=locked.pk).update(autonomy_trial_until=None, autonomy_trial_from=None)
    keyring.KEYRING.changed()
    record_event(
        event_type=EventType.AUTONOMY_CHANGED,
        subject=locked,
        payload={
            "category": None,
            "from": locked.overall_autonomy,
            "to": locked.overall_autonomy,
            "own_from": locked.autonomy_level,
            "own_to": locked.autonomy_level,
            "why": "The 30-day trial passed without a lowering condition.",
            "source": TRIAL_ENDED,
            "trial_until": None,
        },
    )
    return True


def refresh_autonomy(now: datetime | None = None) -> dict[str, int]:
    """Beat's tick: recompute the recommendations, apply the lowerings, end passed trials."""
    now = now or timezone.now()
    lowered = 0
    for recommendation in autonomy.refresh(now):
        lowered_to = lower_autonomy(
            agent=recommendation.agent,
            reasons=recommendation.reasons,
            expected_level=recommendation.level,
            expected_changed_at=recommendation.agent.autonomy_changed_at,
        )
        if lowered_to is not None:
            lowered += 1
    ended = 0
    for agent in Agent.objects.filter(autonomy_trial_until__lte=now):
        ended += end_trial(agent=agent)
    return {"lowered": lowered, "trials_ended": ended}
