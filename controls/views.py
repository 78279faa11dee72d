"""The autonomy controls on an agent's page (SPEC §4, §6), for managers and admins: a level set
by hand, a recommended raise applied in one click (a 30-day trial), an automatic lowering undone.

Each is a thin door onto `controls.services` (audited `autonomy.changed`); a refused change
comes back as a message on the agent's page.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from agents.models import AUTONOMY_NAMES, Agent
from controls import services
from controls.forms import AutonomyForm, RaiseForm

MANAGERS = (Role.MANAGER, Role.ADMIN)


def _back(agent: Agent) -> HttpResponseRedirect:
    return redirect("agents:detail", name=agent.name)


def _refused(request: AuthenticatedHttpRequest, exc: ValidationError) -> None:
    for message in exc.messages:
        messages.error(request, message)


def _named(level: int) -> str:
    return f"{level} ({AUTONOMY_NAMES[level]})"


@require_POST
@role_required(*MANAGERS)
def set_level(request: AuthenticatedHttpRequest, name: str) -> HttpResponseRedirect:
    agent = get_object_or_404(Agent, name=name)
    form = AutonomyForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return _back(agent)
    level, category = form.target
    try:
        changed = services.set_autonomy(
            agent=agent,
            level=level,
            category=category,
            why=form.cleaned_data["reason"],
            actor=request.user,
        )
    except ValidationError as exc:
        _refused(request, exc)
        return _back(agent)
    what = f"{agent.name}'s {category} actions" if category else agent.name
    if not changed:
        messages.info(request, f"Nothing changed: {what} had that level already.")
    elif category and level is None:
        messages.success(request, f"{what} follow its overall level again.")
    elif level is None:
        messages.success(
            request, f"{agent.name} is at the default level, {_named(agent.overall_autonomy)}."
        )
    else:
        messages.success(request, f"{what} are at level {_named(level)} now.")
    return _back(agent)


@require_POST
@role_required(*MANAGERS)
def apply_raise(request: AuthenticatedHttpRequest, name: str) -> HttpResponseRedirect:
    """The recommendation's one click: one level up, as a 30-day trial."""
    agent = get_object_or_404(Agent, name=name)
    form = RaiseForm(request.POST)
    # The page offered a raise to `to`; since then the level may have changed (then the
    # recommendation is recomputed for the new level before a raise is offered again): the
    # service compares under the agent's lock.
    if not form.is_valid():
        messages.error(request, "The page was out of date: look at the level and try again.")
        return _back(agent)
    try:
        level = services.apply_recommendation(
            agent=agent, actor=request.user, expected_to=form.cleaned_data["to"]
        )
    except ValidationError as exc:
        _refused(request, exc)
        return _back(agent)
    until = agent.autonomy_trial_until
    messages.success(
        request,
        f"{agent.name} is at level {_named(level)} on trial"
        + (f" until {until:%Y-%m-%d}" if until else "")
        + ": a lowering condition meanwhile reverts it.",
    )
    return _back(agent)


@require_POST
@role_required(*MANAGERS)
def restore(request: AuthenticatedHttpRequest, name: str) -> HttpResponseRedirect:
    """Undo an automatic lowering: the levels it replaced."""
    agent = get_object_or_404(Agent, name=name)
    if services.restore_autonomy(agent=agent, actor=request.user):
        messages.success(
            request, f"{agent.name}'s levels are restored: {_named(agent.overall_autonomy)}."
        )
    else:
        messages.info(request, f"No automatic lowering of {agent.name} is left to undo.")
    return _back(agent)
