"""State changes for people: one function each, used by commands, admin and pages alike."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import Role, Tier, User
from audit.events import EventType
from audit.services import record_event


def ensure_role_groups() -> dict[str, Group]:
    return {role: Group.objects.get_or_create(name=role)[0] for role in Role.values}


@transaction.atomic
def create_user(
    *,
    username: str,
    password: str,
    roles: Iterable[str] = (),
    tier: str = "",
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    check_password: bool = True,
    actor: User | None = None,
) -> User:
    """Create a person with the given roles; an approver must have a tier and only they may.

    Raises ValidationError naming what is wrong (unknown role or tier, weak password, taken
    username), before anything is written. `actor` is who did it (None: a command or seed).
    """
    roles = sorted(set(roles))
    errors: dict[str, list[str]] = {}
    unknown = [role for role in roles if role not in Role.values]
    if unknown:
        errors["roles"] = [
            f"Unknown role {r!r}; choose from {', '.join(Role.values)}." for r in unknown
        ]
    if tier and tier not in Tier.values:
        errors["tier"] = [f"Unknown tier {tier!r}; choose from {', '.join(Tier.values)}."]
    elif Role.APPROVER in roles and not tier:
        errors["tier"] = ["An approver needs a tier."]
    elif tier and Role.APPROVER not in roles:
        errors["tier"] = ["Only approvers have a tier."]
    if User.objects.filter(username__iexact=username).exists():
        errors["username"] = [f"The username {username!r} is taken."]
    user = User(
        username=username, email=email, first_name=first_name, last_name=last_name, tier=tier
    )
    if check_password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    user.is_staff = Role.ADMIN in roles
    user.save()
    groups = ensure_role_groups()
    user.groups.set([groups[role] for role in roles])
    record_event(
        event_type=EventType.USER_CREATED,
        actor=actor,
        subject=user,
        payload={"username": user.username, "roles": roles, "tier": tier},
    )
    return user
