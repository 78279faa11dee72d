"""Navigation for the base layout: only the sections the person's roles open."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from accounts.models import Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    active: bool


# (label, URL name, roles that see it; empty = everyone logged in)
_SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Escalations", "approvals:escalations", (Role.MANAGER,)),
    ("Agents", "agents:list", (Role.MANAGER, Role.ADMIN)),
    ("Budgets", "budgets:overview", (Role.MANAGER, Role.ADMIN)),
    ("Policies", "guardrails:list", (Role.MANAGER, Role.ADMIN, Role.COMPLIANCE)),
    ("Grants", "grants:list", (Role.APPROVER, Role.MANAGER, Role.ADMIN)),
    ("Monitoring", "monitoring:page", (Role.MANAGER, Role.COMPLIANCE)),
    ("Audit", "audit:overview", (Role.COMPLIANCE,)),
    ("Away", "away", (Role.APPROVER,)),
    ("API docs", "api-docs", ()),
    ("Admin", "admin:index", (Role.ADMIN,)),
)


def navigation(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": []}
    # The front page is the inbox of those who decide requests, everyone else's overview.
    items = [
        NavItem("Inbox" if user.has_inbox else "Overview", reverse("home"), request.path == "/")
    ]
    for label, url_name, roles in _SECTIONS:
        if roles and not any(user.has_role(role) for role in roles):
            continue
        try:
            url = reverse(url_name)
        except NoReverseMatch:
            continue  # a section whose app has not shipped its pages yet
        items.append(NavItem(label, url, request.path.startswith(url)))
    # Managers' pages show alerts live (repeated violations, ...): approvals.consumers.
    return {"nav_items": items, "live_notices": user.has_role(Role.MANAGER)}
