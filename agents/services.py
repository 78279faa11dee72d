"""State changes for agents and keys: one function each, shared by commands, admin and pages.

Each change of an existing agent or key tells the processes' copies of the keys
(`keyring.KEYRING.changed()`), so the very next check anywhere reads it again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Role, User
from agents import keyring, keys, webhook_secrets
from agents.models import Agent, AgentStatus, ApiKey
from approvals import rules as approval_rules
from approvals import services as approvals
from audit.events import EventType
from audit.services import record_event


@transaction.atomic
def create_agent(
    *, name: str, owner: User | None = None, team: str = "", actor: User | None = None
) -> tuple[Agent, str]:
    """Register an agent. The name must already be a slug (letters, digits, - and _).

    Returns the agent and its webhook secret, which signs its callbacks: show it to whoever
    registers the agent now, because no page shows it again (it can be rotated)."""
    if not name or slugify(name) != name.lower() or len(name) > 100:
        raise ValidationError({"name": ["Use 1-100 letters, digits, hyphens or underscores."]})
    if Agent.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": [f"An agent named {name!r} exists already."]})
    secret = webhook_secrets.generate()
    agent = Agent.objects.create(
        name=name,
        owner=owner,
        team=team,
        webhook_secret_encrypted=webhook_secrets.encrypt(secret),
    )
    record_event(
        event_type=EventType.AGENT_CREATED,
        actor=actor,
        subject=agent,
        payload={"name": name, "team": team, "owner": owner.username if owner else None},
    )
    return agent, secret


@transaction.atomic
def rotate_webhook_secret(
    *, agent: Agent, actor: User | None = None, immediately: bool = False
) -> str:
    """Give the agent a new webhook secret and return it, the only time it is shown.

    The replaced secret keeps signing callbacks, after the new one, for
    OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS, so the agent can switch without losing a callback;
    `immediately` (a leaked secret) stops it at once instead. A second rotation within the
    window ends the first one's (only the secret just replaced still signs). Audited without
    either secret."""
    # Locked, so that two rotations at once each keep the secret they really replaced.
    current = (
        Agent.objects.select_for_update(no_key=True)
        .values_list("webhook_secret_encrypted", flat=True)
        .get(pk=agent.pk)
    )
    now = timezone.now()
    grace = timedelta(hours=0 if immediately else settings.OVERSIGHT_WEBHOOK_SECRET_GRACE_HOURS)
    previous = ""
    if grace:
        try:
            # Re-encrypted too: it moves to the current SECRET_KEY if it was under a fallback.
            previous = webhook_secrets.encrypt(webhook_secrets.decrypt(current))
        except webhook_secrets.UndecryptableSecret:
            # SECRET_KEY changed with no fallback: the old secret is gone for good, so rotating
            # is the way back, at once (nothing could sign with it anyway).
            grace = timedelta(0)
    previous_until = now + grace if grace else None
    secret = webhook_secrets.generate()
    Agent.objects.filter(pk=agent.pk).update(
        webhook_secret_encrypted=webhook_secrets.encrypt(secret),
        previous_webhook_secret_encrypted=previous,
        previous_webhook_secret_expires_at=previous_until,
        webhook_secret_rotated_at=now,
    )
    keyring.KEYRING.changed()
    agent.refresh_from_db()
    record_event(
        event_type=EventType.AGENT_WEBHOOK_SECRET_ROTATED,
        actor=actor,
        subject=agent,
        payload={"previous_valid_until": previous_until},
    )
    return secret


@transaction.atomic
def issue_api_key(
    *, agent: Agent, created_by: User | None = None, label: str = ""
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored or shown again."""
    new = keys.generate()
    api_key = ApiKey.objects.create(
        agent=agent,
        prefix=new.prefix,
        secret_hash=new.secret_hash,
        label=label,
        created_by=created_by,
    )
    # The prefix identifies the key; the secret and its hash never go into the trail. Whoever
    # saw the secret can act as the agent, so they count as its owner for the no-self-approval
    # rule (`approvals.rules.holder_ids`) and the trail says who that was.
    record_event(
        event_type=EventType.API_KEY_CREATED,
        actor=created_by,
        subject=api_key,
        payload={
            "agent_id": agent.pk,
            "agent": agent.name,
            "prefix": new.prefix,
            "label": label,
            "shown_to": created_by.username if created_by else "console",
        },
    )
    return api_key, new.plaintext


@transaction.atomic
def change_agent(*, agent: Agent, owner: User | None, team: str, actor: User | None = None) -> bool:
    """Change an agent's owner or team. False when neither changed."""
    team = team.strip()
    if len(team) > 100:
        raise ValidationError({"team": ["Use at most 100 characters."]})
    locked = (
        Agent.objects.select_for_update(of=("self",), no_key=True)
        .select_related("owner")
        .get(pk=agent.pk)
    )
    before = {"owner": _username(locked.owner), "team": locked.team}
    after = {"owner": _username(owner), "team": team}
    changed = {name for name in before if before[name] != after[name]}
    if not changed:
        return False
    Agent.objects.filter(pk=agent.pk).update(owner=owner, team=team)
    keyring.KEYRING.changed()
    record_event(
        event_type=EventType.AGENT_CHANGED,
        actor=actor,
        subject=locked,
        payload={
            "before": {name: before[name] for name in sorted(changed)},
            "after": {name: after[name] for name in sorted(changed)},
        },
    )
    agent.refresh_from_db()
    return True


@transaction.atomic
def set_self_approval(*, agent: Agent, allowed: bool, reason: str, actor: User | None) -> bool:
    """Let an agent's owner and key creators decide its requests, or stop them (SPEC §2: an
    admin's exception to separation of duties, with a reason). False when already so."""
    if actor is not None and not actor.has_role(Role.ADMIN):
        raise PermissionDenied("Only an admin may change who may approve an agent's requests.")
    if actor is not None and allowed and actor.pk in approval_rules.agent_holder_ids(agent):
        raise PermissionDenied(
            "You own this agent or hold a key to it: another admin must allow its self-approval."
        )
    if not reason.strip():
        raise ValidationError({"reason": ["Say why."]})
    updated = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(allow_self_approval=allowed)
        .update(allow_self_approval=allowed)
    )
    keyring.KEYRING.changed()
    agent.refresh_from_db()
    if updated:
        record_event(
            event_type=EventType.AGENT_CHANGED,
            actor=actor,
            subject=agent,
            payload={
                "before": {"allow_self_approval": not allowed},
                "after": {"allow_self_approval": allowed},
                "reason": reason.strip(),
            },
        )
    return updated == 1


def _username(user: User | None) -> str | None:
    return user.username if user else None


@transaction.atomic
def revoke_api_key(*, api_key: ApiKey, revoked_by: User | None = None) -> bool:
    """Revoke a key; the very next call with it fails. False when it was revoked already."""
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=revoked_by
    )
    keyring.KEYRING.changed()
    api_key.refresh_from_db()
    if updated:
        record_event(
            event_type=EventType.API_KEY_REVOKED,
            actor=revoked_by,
            subject=api_key,
            payload={"agent_id": api_key.agent_id, "prefix": api_key.prefix},
        )
    return updated == 1


# Any status change ends a pending re-enable request: it was for the agent as it was.
_NO_REENABLE_REQUEST: dict[str, Any] = {
    "reenable_requested_by": None,
    "reenable_requested_at": None,
    "reenable_reason": "",
}


_BREAKER_CLOSED: dict[str, Any] = {"consecutive_failures": 0, "breaker_opened_at": None}


def _record_breaker_closed(agent: Agent, failures: int, actor: User | None) -> None:
    if failures >= settings.OVERSIGHT_BREAKER_OPEN_AFTER:
        record_event(
            event_type=EventType.BREAKER_CLOSED,
            actor=actor,
            subject=agent,
            payload={"consecutive_failures": failures, "cause": "resumed"},
        )


@transaction.atomic
def set_agent_status(
    *, agent: Agent, status: str, reason: str = "", actor: User | None = None
) -> bool:
    """Pause, resume or disable (kill switch) an agent. False when it already had that status.

    A disabled agent is not re-enabled here: that takes two people (`request_reenable`, then
    `confirm_reenable` by someone else)."""
    if status not in AgentStatus.values:
        raise ValidationError({"status": [f"Unknown status {status!r}."]})
    if status != AgentStatus.ACTIVE and not reason.strip():
        raise ValidationError({"reason": ["Say why the agent is being stopped."]})
    # Locked, so that the status recorded as "from" is the one this change replaced.
    previous, failures = (
        Agent.objects.select_for_update(no_key=True)
        .values_list("status", "consecutive_failures")
        .get(pk=agent.pk)
    )
    if previous == AgentStatus.DISABLED and status != AgentStatus.DISABLED:
        raise ValidationError(
            {"status": ["A disabled agent runs again only when a second person confirms."]}
        )
    pending = (
        approvals.lock_pending(agent, cancelling=status == AgentStatus.DISABLED)
        if previous != status
        else []
    )
    updated = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status=status)
        .update(
            status=status,
            status_reason=reason.strip(),
            status_changed_at=timezone.now(),
            **_NO_REENABLE_REQUEST,
            # A manager's resume closes the circuit breaker (SPEC §6).
            **(_BREAKER_CLOSED if status == AgentStatus.ACTIVE else {}),
        )
    )
    keyring.KEYRING.changed()
    agent.refresh_from_db()
    if updated:
        record_event(
            event_type=EventType.AGENT_STATUS_CHANGED,
            actor=actor,
            subject=agent,
            payload={"from": previous, "to": status, "reason": agent.status_reason},
        )
        if status == AgentStatus.ACTIVE:
            _record_breaker_closed(agent, failures, actor)
        # In this transaction: once a stop commits, no vote can approve what the agent asked
        # for, and the kill switch has told every waiter `cancelled`.
        approvals.agent_status_changed(
            agent=agent, pending=pending, reason=agent.status_reason, actor=actor
        )
    return updated == 1


@transaction.atomic
def request_reenable(*, agent: Agent, actor: User, reason: str) -> Agent:
    """First of the two people who re-enable a disabled agent (SPEC §6): ask, with a reason.
    Nothing changes for the agent until a different person confirms."""
    if not reason.strip():
        raise ValidationError({"reason": ["Say why the agent is safe to run again."]})
    locked = (
        Agent.objects.select_for_update(of=("self",), no_key=True)
        .select_related("reenable_requested_by")
        .get(pk=agent.pk)
    )
    if locked.status != AgentStatus.DISABLED:
        raise ValidationError({"status": [f"{locked.name} is not disabled."]})
    if locked.reenable_requested_by is not None:
        who = locked.reenable_requested_by.display_name
        raise ValidationError(
            {"status": [f"{who} has already asked; someone else must confirm or leave it."]}
        )
    Agent.objects.filter(pk=agent.pk).update(
        reenable_requested_by=actor, reenable_requested_at=timezone.now(), reenable_reason=reason
    )
    keyring.KEYRING.changed()
    record_event(
        event_type=EventType.AGENT_REENABLE_REQUESTED,
        actor=actor,
        subject=locked,
        payload={"reason": reason.strip()},
    )
    agent.refresh_from_db()
    return agent


@transaction.atomic
def confirm_reenable(*, agent: Agent, actor: User) -> Agent:
    """Second person: re-enable a disabled agent that someone else asked to re-enable."""
    locked = (
        Agent.objects.select_for_update(of=("self",), no_key=True)
        .select_related("reenable_requested_by")
        .get(pk=agent.pk)
    )
    requester = locked.reenable_requested_by
    if locked.status != AgentStatus.DISABLED:
        raise ValidationError({"status": [f"{locked.name} is not disabled."]})
    if requester is None:
        raise ValidationError({"status": ["Nobody has asked to re-enable this agent yet."]})
    if requester.pk == actor.pk:
        raise ValidationError(
            {"status": ["You asked to re-enable it; a second person must confirm."]}
        )
    reason = locked.reenable_reason.strip()
    Agent.objects.filter(pk=agent.pk).update(
        status=AgentStatus.ACTIVE,
        status_reason="",
        status_changed_at=timezone.now(),
        **_NO_REENABLE_REQUEST,
        **_BREAKER_CLOSED,
    )
    keyring.KEYRING.changed()
    record_event(
        event_type=EventType.AGENT_STATUS_CHANGED,
        actor=actor,
        subject=locked,
        payload={
            "from": AgentStatus.DISABLED,
            "to": AgentStatus.ACTIVE,
            "reason": reason,
            "requested_by": requester.username,
        },
    )
    _record_breaker_closed(locked, locked.consecutive_failures, actor)
    agent.refresh_from_db()
    return agent
