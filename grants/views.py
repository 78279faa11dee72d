"""The grants page: live standing approvals with one-click revocation (approvers see the grants
they made; managers and admins see all). Revoking goes through `grants.services.revoke_grant`
(audited); the agent's page revokes through here too."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.decorators import role_required
from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from grants import selectors, services
from grants.forms import RevokeForm

WHO = (Role.APPROVER, Role.MANAGER, Role.ADMIN)


@role_required(*WHO)
def grant_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "rows": selectors.rows(selectors.visible_to(user)),
        "sees_all": selectors.sees_all(user),
        "limit": selectors.PAGE_LIMIT,
    }
    return render(request, "grants/list.html", context)


@require_POST
@role_required(*WHO)
def revoke(request: AuthenticatedHttpRequest, grant_id: int) -> HttpResponseRedirect:
    grant = selectors.grant_for(request.user, grant_id)
    form = RevokeForm(request.POST)
    form.is_valid()  # both fields are optional; an over-long reason is cut by the service
    reason = form.cleaned_data.get("reason") or request.POST.get("reason", "")[:500]
    try:
        if services.revoke_grant(grant=grant, revoked_by=request.user, reason=reason):
            messages.success(
                request,
                f"Grant #{grant.pk} is revoked: {grant.agent.name}'s next {grant.action} "
                "needs a person again.",
            )
        else:
            messages.info(request, f"Grant #{grant.pk} was revoked already.")
    except services.GrantRefused as exc:
        messages.error(request, exc.message)
    back = form.cleaned_data.get("next") or ""
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(back)
    return redirect("grants:list")
