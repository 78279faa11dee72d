"""State changes for agents and keys: one function each, shared by commands, admin and pages."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import User
from agents import keys
from agents.models import Agent, AgentStatus, ApiKey
from audit.events import EventType
from audit.services import record_event


@transaction.atomic
def create_agent(
    *, name: str, owner: User | None = None, team: str = "", actor: User | None = None
) -> Agent:
    """Register an agent. The name must already be a slug (letters, digits, - and _)."""
    if not name or slugify(name) != name.lower() or len(name) > 100:
        raise ValidationError({"name": ["Use 1-100 letters, digits, hyphens or underscores."]})
    if Agent.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": [f"An agent named {name!r} exists already."]})
    agent = Agent.objects.create(name=name, owner=owner, team=team)
    record_event(
        event_type=EventType.AGENT_CREATED,
        actor=actor,
        subject=agent,
        payload={"name": name, "team": team, "owner": owner.username if owner else None},
    )
    return agent


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
    # The prefix identifies the key; the secret and its hash never go into the trail.
    record_event(
        event_type=EventType.API_KEY_CREATED,
        actor=created_by,
        subject=api_key,
        payload={"agent_id": agent.pk, "agent": agent.name, "prefix": new.prefix, "label": label},
    )
    return api_key, new.plaintext


@transaction.atomic
def revoke_api_key(*, api_key: ApiKey, revoked_by: User | None = None) -> bool:
    """Revoke a key; the very next call with it fails. False when it was revoked already."""
    updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=revoked_by
    )
    api_key.refresh_from_db()
    if updated:
        record_event(
            event_type=EventType.API_KEY_REVOKED,
            actor=revoked_by,
            subject=api_key,
            payload={"agent_id": api_key.agent_id, "prefix": api_key.prefix},
        )
    return updated == 1


@transaction.atomic
def set_agent_status(
    *, agent: Agent, status: str, reason: str = "", actor: User | None = None
) -> bool:
    """Pause, resume or disable an agent. False when it already had that status."""
    if status not in AgentStatus.values:
        raise ValidationError({"status": [f"Unknown status {status!r}."]})
    if status != AgentStatus.ACTIVE and not reason.strip():
        raise ValidationError({"reason": ["Say why the agent is being stopped."]})
    # Locked, so that the status recorded as "from" is the one this change replaced.
    previous = Agent.objects.select_for_update().values_list("status", flat=True).get(pk=agent.pk)
    updated = (
        Agent.objects.filter(pk=agent.pk)
        .exclude(status=status)
        .update(status=status, status_reason=reason.strip(), status_changed_at=timezone.now())
    )
    agent.refresh_from_db()
    if updated:
        record_event(
            event_type=EventType.AGENT_STATUS_CHANGED,
            actor=actor,
            subject=agent,
            payload={"from": previous, "to": status, "reason": agent.status_reason},
        )
    return updated == 1
