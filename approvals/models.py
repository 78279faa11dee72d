"""Approval requests, the votes on them, the escalation routes, and the agent-facing bookkeeping
(idempotency keys, callback outbox).

The rules that change these rows live in `approvals.services`; nothing else writes them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Tier
from oversight.choices import RankedChoices
from oversight.db_fields import ExactJSONField
from oversight.outbox import EmailOutboxItem, OutboxItem


class RiskLevel(RankedChoices):
    """Declared lowest first: the declaration order is the ranking."""

    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class Urgency(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"

    @classmethod
    def time_limit(cls, urgency: str) -> timedelta:
        """The default (and longest) time a request of this urgency may wait (SPEC §2)."""
        return _TIME_LIMITS[urgency]


_TIME_LIMITS: dict[str, timedelta] = {
    Urgency.LOW: timedelta(hours=24),
    Urgency.NORMAL: timedelta(hours=4),
    Urgency.HIGH: timedelta(hours=1),
    Urgency.CRITICAL: timedelta(minutes=15),
}


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def final(cls) -> list[str]:
        return [cls.APPROVED, cls.REJECTED, cls.EXPIRED, cls.CANCELLED]


# The reason recorded (and shown to the agent) when a request runs out of time.
EXPIRED_REASON = "Nobody decided before the time limit."

DEFAULT_ROUTES: dict[str, list[str]] = {
    RiskLevel.LOW: [Tier.TEAM_LEAD],
    RiskLevel.MEDIUM: [Tier.TEAM_LEAD, Tier.ENGINEERING_MANAGER],
    RiskLevel.HIGH: [Tier.ENGINEERING_MANAGER, Tier.DIRECTOR],
    RiskLevel.CRITICAL: [Tier.DIRECTOR, Tier.VP_ENGINEERING],
}


def validate_route_tiers(tiers: object) -> None:
    if not isinstance(tiers, list) or not tiers:
        raise ValidationError("A route is a non-empty list of tiers.")
    unknown = [tier for tier in tiers if tier not in Tier.values]
    if unknown:
        raise ValidationError(f"Unknown tier(s) {unknown}; choose from {', '.join(Tier.values)}.")
    ranks = [Tier.rank(tier) for tier in tiers]
    if ranks != sorted(set(ranks)):
        raise ValidationError("List each tier once, lowest first: escalation only moves up.")


class EscalationRoute(models.Model):
    """Which tiers a request of a risk level goes to, first to last (admin-editable)."""

    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices, unique=True)
    tiers = models.JSONField(validators=[validate_route_tiers])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["risk_level"]

    def __str__(self) -> str:
        return f"{self.risk_level}: {' → '.join(self.tiers)}"


class ApprovalRequest(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: request_agent_recent and request_agent_status lead with agent.
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.PROTECT, related_name="requests", db_index=False
    )
    # The agent's owner when it asked: they may not decide it even after the owner changes
    # (SPEC §2 separation of duties; `approvals.rules.holder_ids`).
    owner_at_request = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    action = models.CharField(max_length=200)
    params = ExactJSONField(default=dict, blank=True)
    params_sha256 = models.CharField(max_length=64)
    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices)  # effective risk
    claimed_risk_level = models.CharField(max_length=16, choices=RiskLevel.choices)
    risk_source = models.CharField(
        max_length=200, help_text="What set the effective risk: policy, or the agent's claim."
    )
    # The policy version the create's check applied (None: no policy covered the action) and
    # the reasons it gave, which say why the request needs a person (SPEC §3, §6).
    policy_version = models.ForeignKey(
        "guardrails.PolicyVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    check_reasons = models.JSONField(default=list, blank=True)
    urgency = models.CharField(max_length=16, choices=Urgency.choices)
    justification = models.TextField()
    confidence = models.FloatField(null=True, blank=True)
    estimated_cost_cents = models.BigIntegerField(null=True, blank=True)
    callback_url = models.URLField(max_length=2000, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    escalates_at = models.DateTimeField()
    escalated_at = models.DateTimeField(null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    # Escalating past the top of the ranking leaves the request there, flagged (SPEC §2).
    escalation_flagged = models.BooleanField(default=False)
    route = models.JSONField(help_text="The tiers of the route at creation, first to last.")
    current_tier = models.CharField(max_length=32, choices=Tier.choices)
    # Rank of the route's first tier: approvers at or above it may decide (indexed for inboxes).
    first_tier_rank = models.PositiveSmallIntegerField()
    required_approvals = models.PositiveSmallIntegerField(default=1)
    # A new token invalidates every timer task scheduled with the old one (approvals.timers).
    timer_token = models.UUIDField(default=uuid.uuid4)
    # Every deadline of this request up to this instant has been handed to the broker as a
    # timer task; later ones are handed over by the beat tick as they come near.
    timers_queued_until = models.DateTimeField(default=timezone.now)

    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # request_decided_by: pending requests stay out of it
    )
    decision_reason = models.TextField(blank=True)
    modified_params = ExactJSONField(null=True, blank=True)
    # The hash of the arguments the approvals were given for: params_sha256, or the hash of
    # action + modified_params after an approve-with-changes.
    current_params_sha256 = models.CharField(max_length=64)
    approved_params_sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["agent", "-created_at"], name="request_agent_recent"),
            models.Index(fields=["agent", "status", "-created_at"], name="request_agent_status"),
            models.Index(
                fields=["expires_at"], condition=Q(status="pending"), name="request_pending_expiry"
            ),
            models.Index(
                fields=["escalates_at"],
                condition=Q(status="pending", escalated_at__isnull=True),
                name="request_pending_escalation",
            ),
            # Decision figures look back a window (escalations page); history grows for years.
            models.Index(
                fields=["decided_at"], condition=Q(decided_at__isnull=False), name="request_decided"
            ),
            models.Index(
                fields=["decided_by"],
                condition=Q(decided_by__isnull=False),
                name="request_decided_by",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=Status.values), name="request_status_known"
            ),
            models.CheckConstraint(
                condition=Q(status="pending", decided_at__isnull=True)
                | (~Q(status="pending") & Q(decided_at__isnull=False)),
                name="request_decided_iff_final",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("created_at")),
                name="request_expires_after_created",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} ({self.risk_level}, {self.status})"

    @property
    def is_pending(self) -> bool:
        return self.status == Status.PENDING

    @property
    def asked_for_budget(self) -> bool:
        """A budget in ask mode wanted a person for it (SPEC §5): approving it raises the cap."""
        return any(reason.get("code") == "budget_exceeded" for reason in self.check_reasons)

    def is_overdue(self, now: datetime | None = None) -> bool:
        """Pending but past its deadline: it counts as expired even before the sweep runs."""
        return self.status == Status.PENDING and (now or timezone.now()) >= self.expires_at

    @property
    def effective_params(self) -> dict[str, object]:
        """The arguments the agent must use if approved."""
        return self.modified_params if self.modified_params is not None else self.params


class VoteChoice(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Vote(models.Model):
    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="votes"
    )
    voter_name = models.CharField(max_length=300)
    vote = models.CharField(max_length=16, choices=VoteChoice.choices)
    comment = models.TextField(blank=True)
    # The hash of the arguments this vote was for (argument binding, SPEC §2).
    params_sha256 = models.CharField(max_length=64)
    modified_params = ExactJSONField(null=True, blank=True)
    is_self_approval = models.BooleanField(default=False)
    # The away approver the voter stood in for (issue 24: delegation), if any: the request was
    # routed to their tier, not the voter's.
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    on_behalf_of_name = models.CharField(max_length=300, blank=True)
    # An approval is voided when a later approve-with-changes replaces the arguments it was for.
    voided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # A person votes at most once per request (a voided approval may be given again
            # for the new arguments).
            models.UniqueConstraint(
                fields=["request", "voter"],
                condition=Q(voided_at__isnull=True),
                name="one_live_vote_per_person",
            ),
            models.CheckConstraint(
                condition=Q(vote__in=VoteChoice.values), name="vote_choice_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.voter_name} {self.vote}"


class IdempotencyKey(models.Model):
    """One create per (API key, Idempotency-Key): the first response is kept and replayed."""

    api_key = models.ForeignKey("agents.ApiKey", on_delete=models.CASCADE, related_name="+")
    # Which endpoint the key was used on: one key may name a create and an outcome report.
    scope = models.CharField(max_length=16, default="requests")
    key = models.CharField(max_length=255)
    body_sha256 = models.CharField(max_length=64)
    request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = ExactJSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # While the first call is in flight: after this, a crashed attempt may be taken over.
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "scope", "key"], name="one_idempotency_key_per_api_key_scope"
            )
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return self.key


class CallbackDelivery(OutboxItem):
    """A decision to POST to the agent's callback URL."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="callbacks")
    url = models.URLField(max_length=2000)
    body = models.TextField(help_text="The exact JSON sent (and signed).")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "callback deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="callback_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.status})"


class EmailKind(models.TextChoices):
    CREATED = "created", "New request"
    ESCALATED = "escalated", "Escalated"


class EmailDelivery(EmailOutboxItem):
    """An email to the people of one tier about one request (SPEC §8). Recipients and content
    are settled when it is sent: whoever holds the tier's approver role then."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="emails")
    kind = models.CharField(max_length=16, choices=EmailKind.choices)
    tier = models.CharField(max_length=32, choices=Tier.choices)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "email deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="email_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.tier} ({self.status})"


class CallbackAlertEmail(EmailOutboxItem):
    """The email telling an agent's owner and the managers that callbacks of the agent failed
    for good (dead letters): at most one per agent and clock hour, however many fail, and it
    lists every dead letter of the agent when it is sent. The outbox sends it."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "window_start"], name="callback_alert_once_per_hour"
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="callback_alert_due"
            ),
        ]

    def __str__(self) -> str:
        return f"callback alert for {self.agent_id} at {self.window_start:%Y-%m-%d %H:00}"


class CallbackAttempt(models.Model):
    delivery = models.ForeignKey(
        CallbackDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["attempted_at"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error}"
