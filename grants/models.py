"""Standing approvals (grants): a person who approved a request also allowed calls like it again,
for a while and/or a number of times (issue 24; `docs/grants.md`).

A grant is bound to one agent, one action (as policies look names up, `rules.action_key`), the
risk the request had and the policy version that judged it. It is either `exact` (the same
arguments, by their hash) or `pinned` (some arguments fixed: an exact value, or for a path-like
argument a prefix). The rules that change these rows live in `grants.services` (made, revoked)
and `grants.uses` (used, voided by the check); nothing else writes them.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from approvals.models import RiskLevel


class GrantKind(models.TextChoices):
    EXACT = "exact", "This exact call"
    PINNED = "pinned", "This action with pinned arguments"


class GrantQuerySet(models.QuerySet["Grant"]):
    def live(self, now: datetime | None = None) -> GrantQuerySet:
        """Not revoked, not voided, not expired, not used up. (Whether its policy version is
        still the current one is the check's question: `grants.uses`.)"""
        return self.filter(
            Q(max_uses__isnull=True) | Q(uses__lt=F("max_uses")),
            revoked_at__isnull=True,
            voided_at__isnull=True,
            expires_at__gt=now or timezone.now(),
        )


class Grant(models.Model):
    """Calls of one agent that a person allowed in advance, while approving a request."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="grants")
    action = models.CharField(max_length=200, help_text="As policies look names up.")
    kind = models.CharField(max_length=16, choices=GrantKind.choices)
    # exact: the hash of the action (as looked up) and the approved arguments.
    params_sha256 = models.CharField(max_length=64, blank=True)
    # pinned: {key: {"equals": value} | {"prefix": "text"}} over top-level arguments.
    pins = models.JSONField(default=dict, blank=True)
    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices)
    policy_version = models.ForeignKey(
        "guardrails.PolicyVersion", on_delete=models.PROTECT, related_name="+"
    )
    made_from = models.ForeignKey(
        "approvals.ApprovalRequest", on_delete=models.PROTECT, related_name="grants"
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="grants_made"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    revoke_reason = models.CharField(max_length=500, blank=True)
    # Set by the first check that found the policy changed since the grant was made.
    voided_at = models.DateTimeField(null=True, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The check's look-up: one agent's unrevoked grants of one action.
            models.Index(
                fields=["agent", "action"],
                condition=Q(revoked_at__isnull=True, voided_at__isnull=True),
                name="grant_agent_action_live",
            ),
            models.Index(fields=["expires_at"], name="grant_expiry"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="exact") & ~Q(params_sha256=""))
                | Q(kind="pinned", params_sha256=""),
                name="grant_kind_fields",
            ),
            models.CheckConstraint(
                condition=Q(max_uses__isnull=True) | Q(max_uses__gte=1, uses__lte=F("max_uses")),
                name="grant_uses_within_max",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="grant_expires_after_created"
            ),
            models.CheckConstraint(
                condition=~Q(risk_level=RiskLevel.CRITICAL), name="grant_never_critical"
            ),
        ]

    def __str__(self) -> str:
        return f"grant #{self.pk}: {self.action} for agent {self.agent_id}"

    @property
    def uses_left(self) -> int | None:
        return None if self.max_uses is None else max(0, self.max_uses - self.uses)

    def state(self, now: datetime | None = None) -> str:
        """live, revoked, voided, expired or used up (the policy version aside)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.voided_at is not None:
            return "voided"
        if self.expires_at <= (now or timezone.now()):
            return "expired"
        if self.max_uses is not None and self.uses >= self.max_uses:
            return "used up"
        return "live"
