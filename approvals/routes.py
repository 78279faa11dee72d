"""Changing escalation routes (admin-editable, audited)."""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from approvals import rules
from approvals.models import EscalationRoute, validate_route_tiers
from audit.events import EventType
from audit.services import record_event


@transaction.atomic
def save_route(*, route: EscalationRoute, actor: User | None) -> EscalationRoute:
    """Create or change a risk level's route; requests keep the route they were created with."""
    validate_route_tiers(route.tiers)
    previous = (
        EscalationRoute.objects.filter(pk=route.pk).values_list("tiers", flat=True).first()
        if route.pk
        else None
    )
    route.save()
    transaction.on_commit(rules.forget_routes)
    record_event(
        event_type=EventType.ROUTE_CHANGED,
        actor=actor,
        subject=route,
        payload={"risk_level": route.risk_level, "from": previous, "to": route.tiers},
    )
    return route
