"""People and their roles.

Roles are Django groups (`approver`, `manager`, `compliance`, `admin`); an approver also has a
tier (SPEC §2) that decides which requests they may decide.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

from django.contrib.auth.models import AbstractUser
from django.db import models

from audit.events import ActorType
from oversight.choices import RankedChoices


class Role(models.TextChoices):
    APPROVER = "approver", "Approver"
    MANAGER = "manager", "Manager"
    COMPLIANCE = "compliance", "Compliance"
    ADMIN = "admin", "Admin"


class Tier(RankedChoices):
    """Approver tiers, declared lowest first: the declaration order is the ranking."""

    TEAM_LEAD = "team_lead", "Team lead"
    ENGINEERING_MANAGER = "engineering_manager", "Engineering manager"
    DIRECTOR = "director", "Director"
    VP_ENGINEERING = "vp_engineering", "VP engineering"


class User(AbstractUser):
    tier = models.CharField(
        max_length=32,
        choices=Tier.choices,
        blank=True,
        help_text="The approver tier; only meaningful for people with the approver role.",
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(tier="") | models.Q(tier__in=Tier.values),
                name="user_tier_known",
            )
        ]

    @cached_property
    def role_names(self) -> frozenset[str]:
        return frozenset(self.groups.values_list("name", flat=True))

    def has_role(self, role: str) -> bool:
        """Superusers hold every role; everyone else holds the roles of their groups."""
        return self.is_active and (self.is_superuser or role in self.role_names)

    @property
    def has_inbox(self) -> bool:
        """Requests are routed to tiers (SPEC §2), so only an approver with a tier has any to
        decide. `services.create_user` gives every approver one; a superuser, who holds every
        role, may have none, and then has no inbox."""
        return bool(self.tier) and self.has_role(Role.APPROVER)

    def covers(self, tier: str) -> bool:
        """Whether this person may decide what is routed to `tier` (SPEC §2 who may decide): an
        active approver of that tier or above. Everything that asks reads this rule: the vote's
        check (`approvals.rules.refusal_to_decide`), and as queries the inbox
        (`approvals.selectors.decidable_by`, on the request's first tier's rank), the emails
        and figures (`accounts.selectors.approvers`); the live groups take the tiers below too."""
        return tier in self.covered_tiers

    @property
    def covered_tiers(self) -> list[str]:
        """The tiers this person decides for: their own and every one below (none without an
        inbox)."""
        return Tier.at_or_below(self.tier) if self.has_inbox else []

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username

    # How the audit trail names a person who acted (audit.services.Actor).
    audit_actor_type: ClassVar[str] = ActorType.USER

    @property
    def audit_name(self) -> str:
        return self.display_name[:300]


class Delegation(models.Model):
    """An approver away until `ends_at`, with `delegate` standing in (issue 24, SPEC §2): the
    requests routed to the away person's tier reach the delegate (inbox, email, live), and the
    delegate's decisions on them are recorded on the away person's behalf. It ends by itself at
    `ends_at`, or earlier when the away person comes back (`ended_at`)."""

    delegator = models.ForeignKey(User, on_delete=models.CASCADE, related_name="delegations")
    delegate = models.ForeignKey(User, on_delete=models.CASCADE, related_name="stand_ins")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]
        indexes = [models.Index(fields=["delegate", "ends_at"], name="delegation_to_whom")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="delegation_positive"
            ),
            models.CheckConstraint(
                condition=~models.Q(delegate=models.F("delegator")), name="delegation_not_self"
            ),
            # One open delegation per person: a new one ends the old one first.
            models.UniqueConstraint(
                fields=["delegator"],
                condition=models.Q(ended_at__isnull=True),
                name="delegation_one_open",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.delegator} away until {self.ends_at:%Y-%m-%d %H:%M}, {self.delegate} stands in"
        )
