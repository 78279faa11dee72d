"""Agent controls (SPEC §6): what agents report they did, the alerts their record raises, and the
autonomy recommendations computed from it.

The circuit breaker's count and the autonomy levels are fields of the agent itself
(`agents.models.Agent`), so the check reads them from its verified copy of the caller's key
(`agents.keyring`) and a change reaches every process's very next check. The rules that change
these rows live in `controls.services`, `controls.breaker` and `controls.autonomy`.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from oversight.outbox import EmailOutboxItem


class Receipt(models.TextChoices):
    NONE = "none", "No approval request named"
    MATCHED = "matched", "Executed as approved"
    MISMATCH = "mismatch", "Executed other arguments than approved"
    NOT_APPROVED = "not_approved", "Executed a request that was not approved"


class Outcome(models.Model):
    """One action an agent reports it carried out (`POST /api/v1/outcomes`). Naming an approval
    request makes it that request's execution receipt: one per request."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="outcomes")
    action = models.CharField(max_length=200)
    params_sha256 = models.CharField(max_length=64)
    approval_request = models.OneToOneField(
        "approvals.ApprovalRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="receipt",
    )
    # The request the agent named, kept also when this is not the request's receipt (a second
    # report of it, with other arguments: a mismatch all the same).
    named_request_id = models.UUIDField(null=True, blank=True)
    receipt = models.CharField(max_length=16, choices=Receipt.choices, default=Receipt.NONE)
    # For a receipt: the hash the request was approved with ("" when it was not approved).
    approved_params_sha256 = models.CharField(max_length=64, blank=True)
    success = models.BooleanField()
    error = models.TextField(blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    cost_cents = models.DecimalField(max_digits=16, decimal_places=6, null=True, blank=True)
    # The action's policy as it stood when the outcome came in (empty: no policy covers it).
    risk_level = models.CharField(max_length=16, blank=True)
    category = models.CharField(max_length=16, blank=True)
    # An execution mismatch, or a failure of a critical action (SPEC §6's critical failures).
    critical = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["agent", "-created_at"], name="outcome_agent_time"),
            models.Index(fields=["created_at"], name="outcome_time"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {'succeeded' if self.success else 'failed'}"

    @property
    def mismatched(self) -> bool:
        return self.receipt in (Receipt.MISMATCH, Receipt.NOT_APPROVED)


class AlertKind(models.TextChoices):
    CIRCUIT_BREAKER = "circuit_breaker", "Circuit breaker paused an agent"
    EXECUTION_MISMATCH = "execution_mismatch", "Execution mismatch"
    CASCADE = "cascade", "Failures across a team"
    AUTONOMY_LOWERED = "autonomy_lowered", "Autonomy lowered"


class AgentAlert(models.Model):
    """Something about an agent's record that the managers are told of at once (live, email,
    audit). A cascade is about a team: at most one per team and clock hour."""

    kind = models.CharField(max_length=24, choices=AlertKind.choices)
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    team = models.CharField(max_length=100, blank=True)
    window_start = models.DateTimeField(null=True, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "window_start"],
                condition=Q(kind="cascade"),
                name="one_cascade_alert_per_team_hour",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.agent or self.team}"


class AgentAlertEmail(EmailOutboxItem):
    """The email about one alert, written with it: the outbox sends it."""

    alert = models.OneToOneField(AgentAlert, on_delete=models.CASCADE, related_name="email")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="agent_alert_email_due",
            ),
        ]

    def __str__(self) -> str:
        return f"email about {self.alert} ({self.status})"


class Direction(models.TextChoices):
    RAISE = "raise", "Raise one level"
    LOWER = "lower", "Lower one level"
    KEEP = "keep", "Keep"


class AutonomyRecommendation(models.Model):
    """What the agent's record since its level last changed (30 days at most) says about its
    autonomy, with the counts behind it. Beat refreshes it (`controls.autonomy.refresh`)."""

    agent = models.OneToOneField(
        "agents.Agent", on_delete=models.CASCADE, primary_key=True, related_name="recommendation"
    )
    computed_at = models.DateTimeField()
    since = models.DateTimeField()
    level = models.PositiveSmallIntegerField(help_text="The overall level it was computed for.")
    direction = models.CharField(max_length=8, choices=Direction.choices)
    reasons = models.JSONField(default=list)
    outcomes = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    decided = models.PositiveIntegerField(default=0)
    overridden = models.PositiveIntegerField(default=0)
    critical_failures = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.direction}"

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.outcomes if self.outcomes else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden / self.decided if self.decided else None

    @property
    def target(self) -> int:
        step = {Direction.RAISE: 1, Direction.LOWER: -1}.get(Direction(self.direction), 0)
        return max(0, min(5, self.level + step))
