"""The policies pages (SPEC §4, §6): the policies with their versions and history (managers and
compliance read, admins edit in the admin), the simulator (managers, admins), and the guardrail
violations with filters (managers, compliance)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from guardrails import policyfile, selectors, services
from guardrails.forms import SimulatorForm, ViolationFilterForm
from guardrails.models import Policy

READERS = (Role.MANAGER, Role.ADMIN, Role.COMPLIANCE)
SIMULATES = (Role.MANAGER, Role.ADMIN)
PAGE_SIZE = 50


@require_safe
@role_required(*READERS)
def policy_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    policies = list(Policy.objects.select_related("agent").order_by("name", "scope", "team"))
    context = {
        "policies": policies,
        "unknown_actions": settings.OVERSIGHT_UNKNOWN_ACTIONS,
        "may_edit": request.user.has_role(Role.ADMIN) and request.user.is_staff,
        "may_simulate": any(request.user.has_role(role) for role in SIMULATES),
    }
    return render(request, "guardrails/list.html", context)


@require_safe
@role_required(*READERS)
def policy_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(Policy.objects.select_related("agent"), pk=pk)
    versions = list(policy.versions.select_related("created_by").order_by("-version"))
    history = []
    for newer, older in zip(versions, [*versions[1:], None], strict=True):
        change = policyfile.Change(
            newer.change, "", older.snapshot if older else None, newer.snapshot
        )
        history.append({"version": newer, "fields": change.fields, "before": older})
    violations = selectors.violations().filter(policy_version__policy=policy)[:10]
    context = {
        "policy": policy,
        "history": history,
        "schema_json": json.dumps(policy.params_schema, indent=2) if policy.params_schema else "",
        "violations": violations,
        "may_edit": request.user.has_role(Role.ADMIN) and request.user.is_staff,
        "fields": policyfile.SETTINGS,
    }
    return render(request, "guardrails/detail.html", context)


@require_safe
@role_required(*SIMULATES)
def simulator(request: AuthenticatedHttpRequest) -> HttpResponse:
    """What the check would answer, and why, recording nothing (SPEC §6)."""
    submitted = "action" in request.GET
    form = SimulatorForm(request.GET if submitted else None)
    outcome = None
    if submitted and form.is_valid():
        data = form.cleaned_data
        outcome = services.simulate(
            agent=data["agent"],
            action=data["action"],
            params=data["params"],
            estimated_cost_cents=data["estimated_cost_cents"],
            confidence=data["confidence"],
        )
    names = sorted(set(Policy.objects.values_list("name", flat=True)))
    return render(
        request,
        "guardrails/simulator.html",
        {"form": form, "outcome": outcome, "policy_names": names},
    )


@require_safe
@role_required(*READERS)
def violations(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ViolationFilterForm(request.GET)
    before = _cursor(request.GET.get("before"))
    rows: list[Any] = []
    kept: dict[str, str] = {}
    filtered = False
    if form.is_valid():
        data = form.cleaned_data
        found = selectors.violations(
            agent=data["agent"],
            action=data["action"].strip(),
            code=data["code"],
            since=data["since"],
            until=data["until"],
        )
        if before is not None:
            found = found.filter(pk__lt=before)
        rows = list(found[: PAGE_SIZE + 1])
        kept = {name: value for name in form.fields if (value := request.GET.get(name))}
        filtered = bool(kept)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    older = "?" + urlencode({**kept, "before": rows[-1].pk}) if more else None
    context = {
        "form": form,
        "violations": rows,
        "filtered": filtered,
        "paged": before is not None,
        "older_url": older,
        "first_url": "?" + urlencode(kept) if before is not None else None,
        "alerts": selectors.recent_alerts(),
    }
    return render(request, "guardrails/violations.html", context)


def _cursor(raw: str | None) -> int | None:
    if raw is None or not raw.isdigit() or len(raw) > 19:
        return None
    return int(raw) or None
