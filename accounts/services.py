"""State changes for people: one function each, used by commands, admin and pages alike."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import selectors
from accounts.models import Delegation, Role, Tier, User
from audit.events import EventType
from audit.models import AuditEvent
from audit.services import record_event


def access_problems(roles: Iterable[str], tier: str) -> dict[str, list[str]]:
    """What is wrong with giving someone these roles and this tier (by field), if anything:
    the rule for `create_user`, `change_access` and the admin's form."""
    errors: dict[str, list[str]] = {}
    roles = set(roles)
    unknown = sorted(role for role in roles if role not in Role.values)
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
    return errors


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
    errors = access_problems(roles, tier)
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


@transaction.atomic
def change_access(
    *,
    user: User,
    roles: Iterable[str],
    tier: str,
    is_active: bool,
    is_superuser: bool,
    actor: User | None = None,
) -> bool:
    """Change what someone may do: roles, approver tier, active, superuser (SPEC §7: every
    such change is audited, with what it was before). False when nothing changed.

    Only a superuser makes, unmakes or changes one, and nobody deactivates themselves or drops
    their own admin role or superuser flag (locked out by a slip, they would need another
    admin to get back)."""
    roles = sorted(set(roles))
    errors = access_problems(roles, tier)
    if errors:
        raise ValidationError(errors)
    locked = User.objects.select_for_update().get(pk=user.pk)
    before = _access(locked)
    after = {"roles": roles, "tier": tier, "is_active": is_active, "is_superuser": is_superuser}
    changed = sorted(name for name in before if before[name] != after[name])
    if not changed:
        return False
    refusal = refusal_to_change_access(
        actor, locked, roles=roles, is_active=is_active, is_superuser=is_superuser
    )
    if refusal:
        raise PermissionDenied(refusal)
    locked.tier = tier
    locked.is_active = is_active
    locked.is_superuser = is_superuser
    locked.is_staff = is_superuser or Role.ADMIN in roles  # the admin site is for admins only
    locked.save(update_fields=["tier", "is_active", "is_superuser", "is_staff"])
    groups = ensure_role_groups()
    locked.groups.set([groups[role] for role in roles])
    record_event(
        event_type=EventType.USER_CHANGED,
        actor=actor,
        subject=locked,
        payload={
            "username": locked.username,
            "before": {name: before[name] for name in changed},
            "after": {name: after[name] for name in changed},
        },
    )
    user.refresh_from_db()
    user.__dict__.pop("role_names", None)
    return True


def refusal_to_change_access(
    actor: User | None, user: User, *, roles: list[str], is_active: bool, is_superuser: bool
) -> str | None:
    """Why `actor` may not give `user` this access, or None (None actor: a command)."""
    if actor is None:
        return None
    if (is_superuser != user.is_superuser or user.is_superuser) and not actor.is_superuser:
        return "Only a superuser may make or unmake one, or change one's access."
    drops_admin = actor.has_role(Role.ADMIN) and Role.ADMIN not in roles and not is_superuser
    drops_superuser = actor.is_superuser and not is_superuser
    if actor.pk == user.pk and (not is_active or drops_admin or drops_superuser):
        return "You may not deactivate yourself or drop your own admin role or superuser flag."
    return None


def _access(user: User) -> dict[str, object]:
    return {
        "roles": sorted(user.groups.values_list("name", flat=True)),
        "tier": user.tier,
        "is_active": user.is_active,
        "is_superuser": user.is_superuser,
    }


@transaction.atomic
def record_lockout(*, username: str, address: str, limits: list[str]) -> AuditEvent:
    """Audit that logins are locked (SPEC §7: one event per lockout, not one per attempt).

    Called by the login throttle (accounts.throttle) with the failure that reaches a limit:
    `limits` names the ones it reached (`account_and_address`, `address`, `account`), for the
    name as typed, from `address`. The name is whatever was typed, so it is cut short and
    cleaned before it goes into the chain; the password is never passed here.
    """
    name = username.replace("\x00", "")[:150]
    user_pk = (
        User.objects.filter(username__iexact=name).values_list("pk", flat=True).first()
        if name
        else None
    )
    return record_event(
        event_type=EventType.LOGIN_LOCKED_OUT,
        subject=("user", str(user_pk)) if user_pk is not None else None,
        payload={"username": name, "remote_addr": address[:64], "limits": list(limits)},
    )


def password_changed(*, user: User, actor: User | None) -> None:
    """Audit that someone's password was set by another person (the admin's password form):
    every session of theirs ends with it (SPEC §9.8), and who did it is on record."""
    record_event(
        event_type=EventType.USER_CHANGED,
        actor=actor,
        subject=user,
        payload={"username": user.username, "after": {"password": "set by an admin"}},
    )


# --- away: delegating one's requests (issue 24) ---------------------------------------------

MAX_AWAY = timedelta(days=90)


@transaction.atomic
def set_away(
    *,
    person: User,
    delegate: User,
    until: datetime,
    note: str = "",
    actor: User | None = None,
    now: datetime | None = None,
) -> Delegation:
    """`person` is away until `until` and `delegate` stands in: requests routed to the person's
    tier reach the delegate, whose decisions on them are recorded on the person's behalf. The
    delegate must be an active approver who may decide everything the person may (their tier or
    above), and not away themselves. A delegation the person had open ends here."""
    now = now or timezone.now()
    errors: dict[str, list[str]] = {}
    if not person.has_inbox:
        errors["person"] = ["Only an approver with a tier has requests to delegate."]
    if delegate.pk == person.pk:
        errors["delegate"] = ["Choose someone else to stand in for you."]
    elif not delegate.has_inbox or (person.tier and not delegate.covers(person.tier)):
        tier = Tier(person.tier).label.lower() if person.tier else "your"
        errors["delegate"] = [
            f"{delegate.display_name} may not decide what you decide: choose an active "
            f"approver at {tier} level or above."
        ]
    elif selectors.away(delegate, now) is not None:
        errors["delegate"] = [f"{delegate.display_name} is away too; choose someone who is in."]
    if until <= now:
        errors["until"] = ["Choose a time in the future."]
    elif until - now > MAX_AWAY:
        errors["until"] = [f"At most {MAX_AWAY.days} days ahead."]
    if len(note) > 300:
        errors["note"] = ["At most 300 characters."]
    if errors:
        raise ValidationError(errors)
    # Lock the person's row: two changes of their absence at once take turns.
    User.objects.select_for_update().filter(pk=person.pk).first()
    _end_open(person, now=now, why="replaced", actor=actor or person)
    delegation = Delegation.objects.create(
        delegator=person, delegate=delegate, starts_at=now, ends_at=until, note=note.strip()
    )
    record_event(
        event_type=EventType.DELEGATION_SET,
        actor=actor or person,
        subject=person,
        payload={
            "delegate": delegate.username,
            "tier": person.tier,
            "starts_at": now,
            "ends_at": until,
            "note": delegation.note,
        },
    )
    return delegation


@transaction.atomic
def end_away(*, person: User, actor: User | None = None, now: datetime | None = None) -> int:
    """`person` is back: their open delegation ends now. Returns how many ended (0 or 1)."""
    return _end_open(person, now=now or timezone.now(), why="back", actor=actor or person)


def _end_open(person: User, *, now: datetime, why: str, actor: User) -> int:
    """End the person's open delegation (0 or 1), audited with `why`."""
    ended = 0
    for open_one in Delegation.objects.select_for_update().filter(
        delegator=person, ended_at__isnull=True
    ):
        _end(open_one, at=min(now, open_one.ends_at), why=why, actor=actor)
        ended += 1
    return ended


def end_lapsed(now: datetime | None = None) -> int:
    """Close the delegations whose time is up (beat, every minute), each audited once. They
    stopped applying at `ends_at` already (`selectors.away`); this records that they ended."""
    now = now or timezone.now()
    ended = 0
    due = Delegation.objects.filter(ended_at__isnull=True, ends_at__lte=now).values_list(
        "pk", flat=True
    )
    for pk in list(due[:500]):
        with transaction.atomic():
            delegation = (
                Delegation.objects.select_for_update(skip_locked=True)
                .filter(pk=pk, ended_at__isnull=True)
                .select_related("delegator", "delegate")
                .first()
            )
            if delegation is None:
                continue  # ended meanwhile, or another sweep has it
            _end(delegation, at=delegation.ends_at, why="lapsed", actor=None)
            ended += 1
    return ended


def _end(delegation: Delegation, *, at: datetime, why: str, actor: User | None) -> None:
    delegation.ended_at = at
    delegation.save(update_fields=["ended_at"])
    record_event(
        event_type=EventType.DELEGATION_ENDED,
        actor=actor,
        subject=delegation.delegator,
        payload={"delegate": delegation.delegate.username, "why": why, "ended_at": at},
    )
