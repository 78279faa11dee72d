"""Pages for people: the front page, the inbox of decidable requests, and the request page
with its decisions.

Decisions go through the same services as everything else (`approvals.services`); a refused
decision (expired meanwhile, decided by someone else, not allowed) comes back as a clear
message on the page, never an error page.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.decorators import role_required
from accounts.models import Role, Tier
from accounts.types import AuthenticatedHttpRequest
from approvals import bulk, callbacks, rules, selectors, services
from approvals.forms import ApproveForm, BulkDecisionForm, RejectForm
from approvals.inbox import inbox_context
from approvals.models import ApprovalRequest, Status, VoteChoice
from budgets import selectors as budget_selectors
from controls.models import Outcome
from grants import services as grants
from grants.forms import GrantForm
from grants.models import Grant


@login_required
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The front page: an approver's inbox, everyone else's overview (SPEC §4: inbox at /)."""
    user = request.user
    if user.has_inbox:
        return inbox(request)
    roles = [label for value, label in Role.choices if user.has_role(value)]
    return render(
        request,
        "accounts/home.html",
        {"roles": roles, "approver_without_tier": user.has_role(Role.APPROVER)},
    )


@role_required(Role.APPROVER)
def inbox(request: AuthenticatedHttpRequest) -> HttpResponse:
    template = "approvals/inbox.html#rows" if request.htmx else "approvals/inbox.html"
    return render(request, template, inbox_context(request.user, request.GET))


def _page(
    request: AuthenticatedHttpRequest,
    approval: ApprovalRequest,
    *,
    approve_form: ApproveForm | None = None,
    reject_form: RejectForm | None = None,
    status: int = 200,
) -> HttpResponse:
    votes = list(approval.votes.select_related("voter").order_by("created_at"))
    original = approval.effective_params
    context: dict[str, Any] = {
        "approval": approval,
        "status": Status.EXPIRED if approval.is_overdue() else approval.status,
        "votes": votes,
        "params_json": _pretty(approval.params),
        "modified_json": _pretty(approval.modified_params)
        if approval.modified_params is not None
        else "",
        "refusal": rules.frozen(approval.agent) or rules.refusal_to_decide(request.user, approval),
        "live_approvals": sum(1 for v in votes if v.vote == VoteChoice.APPROVE and not v.voided_at),
        "estimated_cost": budget_selectors.dollars(approval.estimated_cost_cents)
        if approval.estimated_cost_cents is not None
        else "",
        "already_voted": any(v.voter_id == request.user.pk and v.voided_at is None for v in votes),
        "approve_form": approve_form
        or ApproveForm(
            original=original,
            initial={
                "modified_params": _pretty(original),
                "seen_params_sha256": approval.current_params_sha256,
            },
        ),
        "reject_form": reject_form or RejectForm(),
        "budget_states": budget_selectors.agent_states(approval.agent),
        # The agent's callback, when it has one: a manager wants to know it was not told.
        "callback": callbacks.with_last_error(approval.callbacks.order_by("-created_at")).first()
        if approval.callback_url and approval.status != Status.PENDING
        else None,
        "recent": ApprovalRequest.objects.filter(agent=approval.agent)
        .exclude(pk=approval.pk)
        .only("pk", "action", "status", "created_at")
        .order_by("-created_at")[:5],
        "receipt": _receipt(approval),
    }
    return render(request, "approvals/detail.html", context, status=status)


def _receipt(approval: ApprovalRequest) -> Outcome | None:
    """The outcome the agent reported for the request (its execution receipt), if any."""
    try:
        return approval.receipt
    except Outcome.DoesNotExist:
        return None


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _load(request_id: uuid.UUID) -> ApprovalRequest:
    return get_object_or_404(
        ApprovalRequest.objects.select_related(
            "agent", "agent__owner", "decided_by", "policy_version", "receipt"
        ),
        pk=request_id,
    )


@role_required(Role.APPROVER, Role.MANAGER, Role.COMPLIANCE)
def detail(request: AuthenticatedHttpRequest, request_id: uuid.UUID) -> HttpResponse:
    return _page(request, _load(request_id))


def _decided(
    request: AuthenticatedHttpRequest, approval: ApprovalRequest, outcome: services.VoteOutcome
) -> HttpResponseRedirect:
    if outcome.vote is None:
        changed = outcome.request
        messages.warning(
            request,
            f"Your changes are saved and raise {approval.action} to {changed.risk_level} risk: "
            f"it now needs {changed.required_approvals} approval(s) from "
            f"{Tier(changed.route[0]).label.lower()} level or above, so yours does not count.",
        )
    elif outcome.decided:
        messages.success(
            request, f"{approval.action} is {outcome.request.status}. The agent has been told."
        )
    else:
        needed = outcome.request.required_approvals
        messages.success(
            request,
            f"Your approval is recorded; {approval.action} needs {needed} approvals "
            "from different people.",
        )
    return redirect("home")


@require_POST
@role_required(Role.APPROVER)
def approve(request: AuthenticatedHttpRequest, request_id: uuid.UUID) -> HttpResponse:
    approval = _load(request_id)
    form = ApproveForm(request.POST, original=approval.effective_params)
    # "Also allow calls like this again" (a standing approval); the page shows it again, bound
    # to this POST, when the approval is refused (`grants.templatetags.standing`).
    grant_form = GrantForm(request.POST, params=approval.effective_params)
    if not form.is_valid() or not grant_form.is_valid():
        return _page(request, approval, approve_form=form, status=422)
    vote = {
        "request_id": approval.pk,
        "reviewer": request.user,
        "comment": form.cleaned_data["comment"],
        "modified_params": form.cleaned_data["modified_params"],
        "seen_params_sha256": form.cleaned_data["seen_params_sha256"] or None,
    }
    terms = grant_form.terms()
    try:
        if terms is None:
            outcome = services.approve_request(**vote)
        else:
            outcome, grant = grants.approve_and_grant(**vote, terms=terms)
            _granted(request, grant)
    except services.EditRefused as exc:  # keep the edit on the page, with what is wrong
        form.add_error("modified_params", exc.message)
        return _page(request, approval, approve_form=form, status=exc.status)
    except services.ApprovalError as exc:
        return _refused(request, approval, exc)
    return _decided(request, approval, outcome)


def _granted(request: AuthenticatedHttpRequest, grant: Grant) -> None:
    uses = (
        f", for {grant.max_uses} call{'s' if grant.max_uses != 1 else ''}" if grant.max_uses else ""
    )
    messages.info(
        request,
        f"Standing approval #{grant.pk}: {grant.agent.name}'s {grant.action} like this one is "
        f"allowed without asking until {grant.expires_at:%Y-%m-%d %H:%M} UTC{uses}. "
        "Revoke it on the Grants page.",
    )


@require_POST
@role_required(Role.APPROVER)
def reject(request: AuthenticatedHttpRequest, request_id: uuid.UUID) -> HttpResponse:
    approval = _load(request_id)
    form = RejectForm(request.POST)
    if not form.is_valid():
        return _page(request, approval, reject_form=form, status=422)
    try:
        outcome = services.reject_request(
            request_id=approval.pk, reviewer=request.user, reason=form.cleaned_data["reason"]
        )
    except services.ApprovalError as exc:
        return _refused(request, approval, exc)
    return _decided(request, approval, outcome)


def _refused(
    request: AuthenticatedHttpRequest, approval: ApprovalRequest, exc: services.ApprovalError
) -> HttpResponse:
    """The page again, as it is now, saying why the vote was refused, with the refusal's status
    (409: the request moved on, or its agent was stopped; 403: not yours to decide)."""
    messages.error(request, exc.message)
    return _page(request, _load(approval.pk), status=exc.status)


@role_required(Role.APPROVER)
def bulk_decide(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Approve or reject the rows picked in the inbox, each request on its own through the same
    services as the request page (`approvals.bulk`). htmx gets the result panel; without
    JavaScript the inbox comes back with it. A form error (no reason to reject, too many rows)
    refuses the whole post: nothing is decided."""
    if request.method != "POST":  # the address bar after a post without JavaScript
        return redirect("home")
    form = BulkDecisionForm(request.POST, max_picks=bulk.MAX_PICKS)
    results: list[bulk.RowResult] = []
    if form.is_valid():
        results = bulk.decide(
            reviewer=request.user,
            picks=bulk.parse_picks(form.cleaned_data["pick"]),
            decision=form.cleaned_data["decision"],
            reason=form.cleaned_data["reason"].strip(),
        )
    context = {"bulk_form": form, "bulk": bulk.Summary.of(results, form.cleaned_data)}
    if request.htmx:
        # 200 even for a form error: htmx swaps only successful answers into the panel.
        response = render(request, "approvals/inbox.html#bulk-result", context)
        if results:  # the rows re-read now, even if the live socket is down
            response["HX-Trigger"] = "oversight:resync"
        return response
    context.update(inbox_context(request.user, request.GET))
    return render(request, "approvals/inbox.html", context, status=200 if form.is_valid() else 422)


@role_required(Role.MANAGER)
def escalations(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Escalated and soon-to-expire requests across tiers, and how decisions are keeping up.

    The queue and the load per tier are read now; the 30-day figures, which scan every decision
    of the window, come in a second request (`escalation_figures`) so the queue never waits."""
    now = timezone.now()
    context = {
        "queue": list(selectors.escalation_queue(now)[: selectors.QUEUE_LIMIT]),
        "limit": selectors.QUEUE_LIMIT,
        "soon_minutes": int(selectors.EXPIRING_SOON.total_seconds() // 60),
        "window_days": selectors.STATS_WINDOW.days,
    }
    if request.htmx:  # the periodic refresh re-reads the queue only
        return render(request, "approvals/escalations.html#queue", context)
    tiers = selectors.tier_load(now)
    context.update(
        tiers=tiers,
        totals={
            "pending": sum(t.pending for t in tiers),
            "escalated": sum(t.escalated for t in tiers),
            "expiring_soon": sum(t.expiring_soon for t in tiers),
        },
    )
    return render(request, "approvals/escalations.html", context)


FIGURES_CACHE_KEY = "approvals:escalation-figures"
FIGURES_MAX_AGE_SECONDS = 60


@role_required(Role.MANAGER)
def escalation_figures(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The 30-day figures of the escalations page, computed at most once a minute per process:
    every manager sees the same numbers, and the scan grows with the decisions in the window."""
    figures = cache.get(FIGURES_CACHE_KEY)
    if figures is None:
        now = timezone.now()
        stats = selectors.decision_stats(now)
        figures = {
            "stats": stats,
            "people": selectors.votes_per_person(now),
            "expiry_rate": _rate(sum(s.expired for s in stats), sum(s.decided for s in stats)),
            "as_of": now,
        }
        cache.set(FIGURES_CACHE_KEY, figures, FIGURES_MAX_AGE_SECONDS)
    context = {
        **figures,
        "window_days": selectors.STATS_WINDOW.days,
        "max_age_seconds": FIGURES_MAX_AGE_SECONDS,
    }
    return render(request, "approvals/escalations.html#figures", context)


def _rate(expired: int, decided: int) -> float | None:
    return expired / (expired + decided) if expired + decided else None
