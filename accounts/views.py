"""Login, logout and the overview page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from accounts.models import Role, Tier
from accounts.types import AuthenticatedHttpRequest
from approvals.views import inbox


@login_required
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The front page: an approver's inbox, everyone else's overview (SPEC §4: inbox at /)."""
    user = request.user
    if user.has_role(Role.APPROVER):
        return inbox(request)
    roles = [label for value, label in Role.choices if user.has_role(value)]
    tier = Tier(user.tier).label if user.tier else ""
    return render(request, "accounts/home.html", {"roles": roles, "tier": tier})
