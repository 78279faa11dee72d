"""Reads about people that more than one app needs."""

from __future__ import annotations

from django.db.models import Q

from accounts.models import Role, User


def alert_recipients(*, owner_id: int | None = None) -> list[str]:
    """The email addresses alerts go to: active managers and admins (superusers too), and the
    owner of the agent the alert is about, if any."""
    people = User.objects.filter(is_active=True).exclude(email="")
    watchers = Q(groups__name__in=[Role.MANAGER, Role.ADMIN]) | Q(is_superuser=True)
    if owner_id is not None:
        watchers |= Q(pk=owner_id)
    return sorted(set(people.filter(watchers).values_list("email", flat=True)))
