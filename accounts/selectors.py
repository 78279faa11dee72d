"""Reads about people that more than one app needs."""

from __future__ import annotations

from datetime import datetime
from importlib import import_module

from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    load_backend,
)
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils.crypto import constant_time_compare

from accounts.models import Delegation, Role, User


def approvers() -> QuerySet[User]:
    """The people with an inbox (`User.has_inbox`) as a query: active approvers, superusers
    included, with a tier. Who of them may decide a request: `User.covers`."""
    return (
        User.objects.filter(is_active=True)
        .exclude(tier="")
        .filter(Q(groups__name=Role.APPROVER) | Q(is_superuser=True))
        .distinct()
    )


def delegations_in_force(at: datetime) -> QuerySet[Delegation]:
    """Delegations that apply at `at`: begun, not yet at their end, not ended early."""
    return Delegation.objects.filter(ended_at__isnull=True, starts_at__lte=at, ends_at__gt=at)


def away(person: User, at: datetime) -> Delegation | None:
    """The delegation in force for `person` (they are away), or None."""
    return delegations_in_force(at).filter(delegator=person).select_related("delegate").first()


def standing_in(delegate: User, at: datetime) -> list[Delegation]:
    """The away people `delegate` stands in for now, with them loaded."""
    found = delegations_in_force(at).filter(delegate=delegate, delegate__is_active=True)
    return list(found.select_related("delegator").order_by("delegator__username"))


def stand_ins(delegators: QuerySet[User], at: datetime) -> QuerySet[User]:
    """The active approvers standing in now for any of `delegators`."""
    delegations = delegations_in_force(at).filter(delegator__in=delegators)
    return approvers().filter(pk__in=delegations.values("delegate"))


def emails_of(role: str) -> list[str]:
    """The addresses of the active people who hold `role` (superusers hold every role)."""
    people = User.objects.filter(is_active=True).exclude(email="")
    holders = people.filter(Q(groups__name=role) | Q(is_superuser=True))
    return sorted(set(holders.values_list("email", flat=True)))


def alert_recipients(*, owner_id: int | None = None) -> list[str]:
    """The email addresses alerts go to: active managers and admins (superusers too), and the
    owner of the agent the alert is about, if any."""
    people = User.objects.filter(is_active=True).exclude(email="")
    watchers = Q(groups__name__in=[Role.MANAGER, Role.ADMIN]) | Q(is_superuser=True)
    if owner_id is not None:
        watchers |= Q(pk=owner_id)
    return sorted(set(people.filter(watchers).values_list("email", flat=True)))


def session_user(session_key: str) -> User | None:
    """The person a stored session still logs in, or None if it no longer does: the session is
    gone (logged out, deleted) or expired, the person is inactive, or their password changed
    since the session was made (its auth hash no longer matches).

    The same test Django's `get_user` applies on every page load, made read-only: a WebSocket
    re-checking the session it opened with must not flush or re-key the browser's session.
    """
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()
    try:
        user_id = User._meta.pk.to_python(data[SESSION_KEY])
        backend_path = data[BACKEND_SESSION_KEY]
        session_hash = data[HASH_SESSION_KEY]
    except (KeyError, ValidationError):
        return None  # expired or deleted sessions load as {}
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)  # None for an inactive person
    if not isinstance(user, User) or not session_hash:
        return None
    # A hash made under a retired SECRET_KEY (SECRET_KEY_FALLBACKS) still counts, as in Django.
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(session_hash, known) for known in hashes):
        return None
    return user
