"""Agents (the programs that call the API) and their API keys."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from agents import webhook_secrets
from audit.events import ActorType

MAX_AUTONOMY = 5
AUTONOMY_NAMES = {0: "manual", 1: "assisted", 2: "partial", 3: "conditional", 4: "high", 5: "full"}


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
    # Autonomy (SPEC §6): what the agent may do without a person, 0 (manual) to 5 (full).
    # None follows OVERSIGHT_DEFAULT_AUTONOMY_LEVEL; a category's own level overrides it.
    # Changed only through `controls.services` (audited `autonomy.changed`).
    autonomy_level = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_AUTONOMY)]
    )
    autonomy_by_category = models.JSONField(default=dict, blank=True)
    # When the level last changed: a recommendation weighs only the record since then.
    autonomy_changed_at = models.DateTimeField(null=True, blank=True)
    # A raise on a recommendation is a trial: until then, a lowering condition reverts it to
    # the level it came from.
    autonomy_trial_until = models.DateTimeField(null=True, blank=True)
    autonomy_trial_from = models.PositiveSmallIntegerField(null=True, blank=True)
    # What an automatic lowering replaced ({"level": …, "categories": {…}}), for a manager to
    # restore.
    autonomy_restorable = models.JSONField(null=True, blank=True)
    # The circuit breaker (SPEC §6): failures and people's rejections in a row, reset by a
    # success or a manager's resume. Counted under the agent's row lock (`controls.breaker`).
    consecutive_failures = models.PositiveIntegerField(default=0)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=AgentStatus.values), name="agent_status_known"
            ),
            models.CheckConstraint(
                condition=models.Q(autonomy_level__lte=MAX_AUTONOMY),
                name="agent_autonomy_level_known",
            ),
            # "Bot" and "bot" would be two names for one thing in every log and page.
            models.UniqueConstraint(Lower("name"), name="agent_name_unique_any_case"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def audit_name(self) -> str:
        return self.name

    @property
    def overall_autonomy(self) -> int:
        """The agent's level where no category has its own."""
        if self.autonomy_level is None:
            return int(settings.OVERSIGHT_DEFAULT_AUTONOMY_LEVEL)
        return self.autonomy_level

    def autonomy_for(self, category: str | None) -> int:
        """The level the check applies to an action of `category`."""
        own = (self.autonomy_by_category or {}).get(category) if category else None
        return int(own) if own is not None else self.overall_autonomy

    @property
    def breaker_state(self) -> str:
        """closed; open (checks need a person); tripped (the breaker paused the agent)."""
        if self.breaker_opened_at is None:
            return "closed"
        if self.consecutive_failures >= settings.OVERSIGHT_BREAKER_PAUSE_AFTER:
            return "tripped"
        return "open"

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
