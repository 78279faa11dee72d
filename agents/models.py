"""Agents (the programs that call the API) and their API keys."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from agents import webhook_secrets
from audit.events import ActorType


class AgentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"  # by a manager or the circuit breaker; resumable
    DISABLED = "disabled", "Disabled"  # kill switch; re-enabling needs a second person


def _webhook_secret() -> str:
    """The plain-text default of migration 0001 (the field is gone; 0001 still names this)."""
    return secrets.token_urlsafe(32)


def _new_encrypted_webhook_secret() -> str:
    """A secret nobody has seen, for an agent made without `create_agent` (fixtures, shell);
    rotate it to get one to give the agent."""
    return webhook_secrets.encrypt(webhook_secrets.generate())


class Agent(models.Model):
    # How the audit trail names an agent that acted (audit.services.Actor).
    audit_actor_type: ClassVar[str] = ActorType.AGENT

    name = models.SlugField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_agents",
        help_text="The person responsible; they may not approve this agent's requests.",
    )
    team = models.CharField(max_length=100, blank=True, db_index=True)
    allow_self_approval = models.BooleanField(
        default=False,
        help_text="Its owner and the people who created its keys may decide its requests "
        "(SPEC §2: off unless an admin allows it, with a reason; audited).",
    )
    status = models.CharField(
        max_length=16, choices=AgentStatus.choices, default=AgentStatus.ACTIVE
    )
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # Re-enabling a disabled agent takes two people (SPEC §6): the first one's request waits
    # here until a different person confirms it.
    reenable_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reenable_requested_at = models.DateTimeField(null=True, blank=True)
    reenable_reason = models.TextField(blank=True)
    # The secret that signs callbacks (X-Oversight-Signature), encrypted (agents.webhook_secrets
    # says why not hashed). Shown once, by `create_agent` and `rotate_webhook_secret`; not
    # editable anywhere. After a rotation the replaced secret signs too, until the end of the
    # grace window, so an agent can switch without losing a callback.
    webhook_secret_encrypted = models.TextField(
        default=_new_encrypted_webhook_secret, editable=False
    )
    previous_webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_webhook_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    webhook_secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=AgentStatus.values), name="agent_status_known"
            ),
            # "Bot" and "bot" would be two names for one thing in every log and page.
            models.UniqueConstraint(Lower("name"), name="agent_name_unique_any_case"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_name(self) -> str:
        return self.name

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a callback sent `now`: the current one, then the replaced one
        while its grace window lasts."""
        signing = [webhook_secrets.decrypt(self.webhook_secret_encrypted)]
        until = self.previous_webhook_secret_expires_at
        if self.previous_webhook_secret_encrypted and until and (now or timezone.now()) < until:
            signing.append(webhook_secrets.decrypt(self.previous_webhook_secret_encrypted))
        return signing

    # DRF treats the authenticated principal as `request.user`; an agent is always one.
    @property
    def is_authenticated(self) -> bool:
        return True


class ApiKey(models.Model):
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"ovs_{self.prefix}_…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def touch(self) -> None:
        """Record use, at most once a minute per key so the hot path rarely writes."""
        now = timezone.now()
        if self.last_used_at and now - self.last_used_at < self.LAST_USED_RESOLUTION:
            return
        ApiKey.objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True)
            | models.Q(last_used_at__lt=now - self.LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        self.last_used_at = now


class KeyringVersion(models.Model):
    """One row: the version of the agents and their API keys, raised by a database trigger on
    every change of an agent or a key (migration 0006): whatever made the change (a service,
    the admin, a cascade, an UPDATE typed into psql), except a key's `last_used_at`, which the
    API writes as it goes. Processes keep copies of the keys they authenticate
    (`agents.keyring`) and compare this number, published in Redis, before trusting one."""

    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"keyring v{self.version}"
