"""Login, logout and the overview page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from accounts.models import Role
from accounts.types import AuthenticatedHttpRequest
from approvals.views import inbox


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
