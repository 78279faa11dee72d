"""Agents (the programs that call the API) and their API keys."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class AgentStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"  # by a manager or the circuit breaker; resumable
    DISABLED = "disabled", "Disabled"  # kill switch; re-enabling needs a second person


def _webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class Agent(models.Model):
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
    webhook_secret = models.CharField(
        max_length=64,
        default=_webhook_secret,
        help_text="Signs callbacks to this agent (X-Oversight-Signature).",
    )
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
