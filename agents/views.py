"""Agent pages for managers: status, owner, team, activity; pause / resume / kill switch with
two-person re-enable; autonomy (levels, trial, the recommendation and its evidence) and the
circuit breaker; recent outcomes and alerts; API keys created (shown once) and revoked; the
webhook secret rotated (the new one shown once).

Every change goes through `agents.services` (autonomy: `controls.views`); a refused change comes
back as a message.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from agents import selectors, services
from agents.forms import NewKeyForm, RotateWebhookSecretForm, StatusForm
from agents.models import AUTONOMY_NAMES, Agent, AgentStatus, ApiKey
from approvals.models import ApprovalRequest
from budgets import selectors as budget_selectors
from controls.forms import LEVEL_MEANINGS, AutonomyForm
from controls.models import AgentAlert, AutonomyRecommendation, Direction, Outcome
from grants import selectors as grant_selectors
from guardrails import selectors as guardrail_selectors
from guardrails.models import Category

MANAGERS = (Role.MANAGER, Role.ADMIN)


@role_required(*MANAGERS)
def agent_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    # ?team= narrows the list to one team (a cascade alert links here).
    # A NUL (no team name has one, and PostgreSQL text cannot hold it) is dropped.
    team = request.GET.get("team", "").strip()[:100].replace("\x00", "")
    found = selectors.with_activity()
    if team:
        found = found.filter(team=team)
    agents = list(found)
    for agent in agents:
        agent.last_activity = selectors.last_activity(agent)  # type: ignore[attr-defined]
        agent.autonomy_name = AUTONOMY_NAMES[agent.overall_autonomy]  # type: ignore[attr-defined]
    counts = {status: 0 for status in AgentStatus.values}
    for agent in agents:
        counts[agent.status] += 1
    context = {"agents": agents, "counts": counts, "team": team}
    return render(request, "agents/list.html", context)


def _load(name: str) -> Agent:
    return get_object_or_404(selectors.with_activity(), name=name)


def _detail(
    request: AuthenticatedHttpRequest,
    agent: Agent,
    *,
    new_key: str = "",
    new_webhook_secret: str = "",
    key_form: NewKeyForm | None = None,
    status: int = 200,
) -> HttpResponse:
    previous_until = agent.previous_webhook_secret_expires_at
    context: dict[str, Any] = {
        "agent": agent,
        "last_activity": selectors.last_activity(agent),
        "pending_requests": selectors.pending_requests(agent),
        "keys": agent.api_keys.select_related("created_by", "revoked_by"),
        "recent": ApprovalRequest.objects.filter(agent=agent)
        .only("pk", "action", "status", "risk_level", "created_at")
        .order_by("-created_at")[:8],
        "key_form": key_form or NewKeyForm(),
        "new_key": new_key,
        "new_webhook_secret": new_webhook_secret,
        # While the replaced webhook secret still signs callbacks, the page says until when.
        "previous_secret_until": previous_until
        if previous_until and previous_until > timezone.now()
        else None,
        "grace_hours": settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS,
        "reenable_mine": agent.reenable_requested_by_id == request.user.pk,
        "budget_states": budget_selectors.agent_states(agent),
        "violations": guardrail_selectors.violations(agent=agent)[:5],
        "outcomes": Outcome.objects.filter(agent=agent).only(
            "pk",
            "action",
            "success",
            "receipt",
            "error",
            "critical",
            "created_at",
            "approval_request",
        )[:8],
        "alerts": _alerts(agent)[:5],
        "grant_rows": grant_selectors.for_agent(agent),
        "breaker_open_after": settings.OVERSIGHT_BREAKER_OPEN_AFTER,
        "breaker_pause_after": settings.OVERSIGHT_BREAKER_PAUSE_AFTER,
        **_autonomy(agent),
    }
    response = render(request, "agents/detail.html", context, status=status)
    if new_key or new_webhook_secret:
        # The secret is in this response only: no cache may keep a copy.
        add_never_cache_headers(response)
    return response


def _alerts(agent: Agent) -> QuerySet[AgentAlert]:
    """The agent's own alerts, and the cascades of its team."""
    about = Q(agent=agent)
    if agent.team:
        about |= Q(agent__isnull=True, team=agent.team)
    return AgentAlert.objects.filter(about)


def _autonomy(agent: Agent) -> dict[str, Any]:
    """The autonomy section: levels, trial, the recommendation (offered only when it was weighed
    at the agent's level since it last changed: beat weighs the new record within seconds) and
    the forms."""
    level = agent.overall_autonomy
    own = agent.autonomy_by_category or {}
    recommendation = AutonomyRecommendation.objects.filter(agent=agent).first()
    changed = agent.autonomy_changed_at
    # Weighed before the level last changed, it is about a record that no longer counts.
    current = (
        recommendation is not None
        and recommendation.level == level
        and (changed is None or recommendation.computed_at >= changed)
    )
    restorable = agent.autonomy_restorable
    restore_level = None
    if restorable:
        kept = restorable.get("level")
        restore_level = int(settings.OVERSIGHT_DEFAULT_AUTONOMY_LEVEL) if kept is None else kept
    return {
        "autonomy": {
            "level": level,
            "name": AUTONOMY_NAMES[level],
            "meaning": LEVEL_MEANINGS[level],
            "is_default": agent.autonomy_level is None,
            "categories": [
                {"label": label, "level": int(own[value]), "name": AUTONOMY_NAMES[int(own[value])]}
                for value, label in Category.choices
                if own.get(value) is not None
            ],
            "trial_from_name": ""
            if agent.autonomy_trial_from is None
            else AUTONOMY_NAMES[agent.autonomy_trial_from],
            "restore_level": restore_level,
            "restore_name": AUTONOMY_NAMES.get(restore_level) if restore_level is not None else "",
        },
        "recommendation": recommendation,
        "recommendation_current": current,
        "offer_raise": current
        and recommendation is not None
        and recommendation.direction == Direction.RAISE,
        "autonomy_form": AutonomyForm(),
    }


@role_required(*MANAGERS)
def agent_detail(request: AuthenticatedHttpRequest, name: str) -> HttpResponse:
    return _detail(request, _load(name))


@require_POST
@role_required(*MANAGERS)
def create_key(request: AuthenticatedHttpRequest, name: str) -> HttpResponse:
    """Issue a key and show its secret in this response, the only time it is ever shown."""
    agent = _load(name)
    form = NewKeyForm(request.POST)
    if not form.is_valid():
        return _detail(request, agent, key_form=form, status=422)
    _, plaintext = services.issue_api_key(
        agent=agent, created_by=request.user, label=form.cleaned_data["label"].strip()
    )
    return _detail(request, _load(name), new_key=plaintext)


@require_POST
@role_required(*MANAGERS)
def rotate_webhook_secret(request: AuthenticatedHttpRequest, name: str) -> HttpResponse:
    """Give the agent a new webhook secret and show it in this response, the only time."""
    agent = _load(name)
    form = RotateWebhookSecretForm(request.POST)
    immediately = form.is_valid() and form.cleaned_data["immediately"]
    secret = services.rotate_webhook_secret(
        agent=agent, actor=request.user, immediately=immediately
    )
    return _detail(request, _load(name), new_webhook_secret=secret)


@require_POST
@role_required(*MANAGERS)
def revoke_key(request: AuthenticatedHttpRequest, name: str, key_id: int) -> HttpResponse:
    agent = get_object_or_404(Agent, name=name)
    api_key = get_object_or_404(ApiKey, pk=key_id, agent=agent)
    if services.revoke_api_key(api_key=api_key, revoked_by=request.user):
        messages.success(request, f"Key {api_key} is revoked; the agent's next call with it fails.")
    else:
        messages.info(request, f"Key {api_key} was already revoked.")
    return redirect("agents:detail", name=agent.name)


_STATUS_FOR = {
    "pause": AgentStatus.PAUSED,
    "resume": AgentStatus.ACTIVE,
    "disable": AgentStatus.DISABLED,
}
_DONE = {
    "pause": "{name} is paused: its calls get 403 until someone resumes it.",
    "resume": "{name} is active again.",
    "disable": "{name} is disabled (kill switch). Running it again takes two people.",
    "request_reenable": "Asked to re-enable {name}; a second person must confirm.",
    "confirm_reenable": "{name} is re-enabled.",
}


@require_POST
@role_required(*MANAGERS)
def change_status(request: AuthenticatedHttpRequest, name: str) -> HttpResponseRedirect:
    agent = get_object_or_404(Agent, name=name)
    form = StatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose pause, resume, disable or re-enable.")
        return redirect("agents:detail", name=agent.name)
    action, reason = form.cleaned_data["action"], form.cleaned_data["reason"]
    try:
        if action == "request_reenable":
            services.request_reenable(agent=agent, actor=request.user, reason=reason)
        elif action == "confirm_reenable":
            services.confirm_reenable(agent=agent, actor=request.user)
        elif not services.set_agent_status(
            agent=agent, status=_STATUS_FOR[action], reason=reason, actor=request.user
        ):
            messages.info(request, f"{agent.name} was {agent.status} already.")
            return redirect("agents:detail", name=agent.name)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("agents:detail", name=agent.name)
    messages.success(request, _DONE[action].format(name=agent.name))
    return redirect("agents:detail", name=agent.name)
