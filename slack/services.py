"""Who a Slack user is in Oversight: linking and unlinking, audited as changes of the person's
access (`user.changed`), as a link lets clicks in Slack decide with the person's rights.

Two ways to link, besides an admin's (the admin calls `link` too):
- **by email** (`link_by_email`): Slack says the user's address is confirmed (`users.info`:
  `is_email_confirmed`, `profile.email`) and exactly one active Oversight person has that
  address (case-insensitive). Nobody already linked elsewhere is re-pointed this way.
- **explicitly** (`link_token`, then `confirm_link` from the confirmation page): the unlinked
  Slack user is sent, privately in Slack, a link signed by the server that names their Slack id
  and is valid for 15 minutes; the person who signs in to Oversight with it and confirms is
  linked only if Slack says that account's confirmed address is theirs (`users.info`, asked at
  confirmation), so a link passed on to someone else links nobody. It serves people whom the
  automatic link could not place (linking by email turned off, an address two people share);
  an account whose address differs is linked by an admin. Neither step re-points an existing
  link: the person unlinks first, or an admin moves it.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import User
from audit.events import EventType
from audit.services import record_event
from slack.models import LinkMethod, SlackLink

LINK_SALT = "oversight.slack.link"
LINK_MAX_AGE_SECONDS = 15 * 60
LINK_LASTS = f"{LINK_MAX_AGE_SECONDS // 60} minutes"


def link(
    *, user: User, slack_user_id: str, team_id: str = "", method: str, actor: User | None
) -> SlackLink:
    """Make `slack_user_id` act as `user`, replacing the person's earlier Slack account and the
    Slack user's earlier person (each audited)."""
    with transaction.atomic():
        earlier = list(
            SlackLink.objects.select_for_update()
            .select_related("user")
            .filter(Q(user=user) | Q(slack_user_id=slack_user_id))
        )
        if any(e.user_id == user.pk and e.slack_user_id == slack_user_id for e in earlier):
            return next(e for e in earlier if e.user_id == user.pk)  # linked so already
        SlackLink.objects.filter(pk__in=[e.pk for e in earlier]).delete()
        created = SlackLink.objects.create(
            user=user, slack_user_id=slack_user_id, slack_team_id=team_id, method=method
        )
        for old in earlier:
            if old.user_id != user.pk:  # the Slack user acted as someone else until now
                _audit(old.user, actor, before=old.slack_user_id, after=None, method=method)
        mine = next((e.slack_user_id for e in earlier if e.user_id == user.pk), None)
        _audit(user, actor, before=mine, after=slack_user_id, method=method)
    return created


def unlink(*, user: User, actor: User | None) -> bool:
    """Remove the person's Slack link; False when there was none."""
    with transaction.atomic():
        existing = SlackLink.objects.select_for_update().filter(user=user).first()
        if existing is None:
            return False
        existing.delete()
        _audit(user, actor, before=existing.slack_user_id, after=None, method="")
    return True


def _audit(
    user: User, actor: User | None, *, before: str | None, after: str | None, method: str
) -> None:
    record_event(
        event_type=EventType.USER_CHANGED,
        actor=actor,
        subject=user,
        payload={
            "username": user.username,
            "before": {"slack_user_id": before},
            "after": {"slack_user_id": after, **({"slack_link": method} if after else {})},
        },
    )


def vouched_email(profile: dict[str, Any], slack_user_id: str) -> str:
    """The address Slack vouches for in its `users.info` answer (`user`) for `slack_user_id`: a
    person's account (not a bot, not deactivated) with a confirmed address; else ""."""
    if (
        profile.get("id") != slack_user_id
        or profile.get("is_email_confirmed") is not True
        or profile.get("deleted")
        or profile.get("is_bot")
    ):
        return ""
    return str((profile.get("profile") or {}).get("email") or "").strip()


def link_by_email(*, slack_user_id: str, team_id: str, profile: dict[str, Any]) -> SlackLink | None:
    """Link by the confirmed address in Slack's `users.info` answer (`user`), or None when it
    cannot be done safely: not confirmed, a bot or deactivated account, no person or several
    with that address, or the person already linked to another Slack account."""
    email = vouched_email(profile, slack_user_id)
    if not email:
        return None
    people = list(User.objects.filter(is_active=True, email__iexact=email)[:2])
    if len(people) != 1:
        return None
    person = people[0]
    if SlackLink.objects.filter(user=person).exclude(slack_user_id=slack_user_id).exists():
        return None
    try:
        return link(
            user=person,
            slack_user_id=slack_user_id,
            team_id=team_id,
            method=LinkMethod.EMAIL,
            actor=person,
        )
    except IntegrityError:  # a second click of the same person, linked a moment ago
        return SlackLink.objects.filter(slack_user_id=slack_user_id, user=person).first()


def confirm_link(
    *, user: User, slack_user_id: str, team_id: str, profile: dict[str, Any]
) -> str | None:
    """The explicit step's confirmation by the signed-in `user`: link `slack_user_id` to them,
    or say why not (None: linked). `profile` is Slack's `users.info` answer (`user`) for it."""
    email = vouched_email(profile, slack_user_id)
    if not email:
        return "Slack does not vouch for this account's address, so it cannot be linked here."
    if not user.email or email.casefold() != user.email.strip().casefold():
        return (
            "This Slack account's confirmed address is not yours, so it cannot act as you. If "
            "it is your account under another address, ask an admin to link it."
        )
    links = SlackLink.objects.filter(Q(user=user) | Q(slack_user_id=slack_user_id))
    current = list(links.values_list("user_id", "slack_user_id"))
    if (user.pk, slack_user_id) in current:
        return None  # linked so already
    if any(person == user.pk for person, _ in current):
        return "You are linked to another Slack account: unlink it first."
    if current:
        return "This Slack account acts as someone else; an admin can move it."
    try:
        link(
            user=user,
            slack_user_id=slack_user_id,
            team_id=team_id,
            method=LinkMethod.CONFIRMED,
            actor=user,
        )
    except IntegrityError:  # a second confirmation at the same moment
        return None
    return None


def link_token(*, slack_user_id: str, team_id: str) -> str:
    """The signed token of the explicit link step (valid LINK_MAX_AGE_SECONDS)."""
    return signing.dumps({"user": slack_user_id, "team": team_id}, salt=LINK_SALT)


def read_link_token(token: str) -> tuple[str, str]:
    """The Slack user id and team id a token names. Raises signing.BadSignature (also when
    expired: SignatureExpired is one)."""
    data = signing.loads(token, salt=LINK_SALT, max_age=LINK_MAX_AGE_SECONDS)
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise signing.BadSignature("not a link token")
    return data["user"], str(data.get("team") or "")
