"""Action policies and what their checks leave behind (SPEC §6).

A `Policy` bounds one action: its category and risk, whether a person must approve it, the
patterns its arguments may not contain, the resources it may touch, its cost and rate limits.
Global policies apply to every agent; a policy scoped to a team or an agent overrides the global
one of the same name. Every change makes a `PolicyVersion` (a snapshot of every field); decisions
record the version that made them, and the versions of a deleted policy stay.

The rules that change these rows live in `guardrails.services`; nothing else writes them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from approvals.models import RiskLevel
from budgets.models import Scope, scope_label
from oversight.db_fields import ExactJSONField
from oversight.outbox import EmailOutboxItem


class Category(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    EXECUTE = "execute", "Execute"
    DEPLOY = "deploy", "Deploy"
    DELETE = "delete", "Delete"
    EXTERNAL_API = "external_api", "External API"
    DATABASE = "database", "Database"


class Policy(models.Model):
    """The bounds of one action, for everyone or for one team or agent."""

    name = models.CharField(
        max_length=200, help_text="The action this policy bounds, e.g. deploy_to_production."
    )
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.GLOBAL)
    agent = models.ForeignKey(
        "agents.Agent",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="policies",
        help_text="For an agent's own policy: it overrides the team's and the global one.",
    )
    team = models.CharField(
        max_length=100, blank=True, help_text="For a team's policy: it overrides the global one."
    )
    description = models.TextField(blank=True)
    category = models.CharField(max_length=16, choices=Category.choices)
    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices)
    requires_approval = models.BooleanField(
        default=False, help_text="Every call needs a person's approval."
    )
    forbidden_patterns = models.JSONField(
        default=list,
        blank=True,
        help_text="Regular expressions (RE2 syntax, case-insensitive) that no string anywhere "
        "in the arguments may match.",
    )
    allowed_resources = models.JSONField(
        default=list,
        blank=True,
        help_text="Prefixes that the path, file_path and resource arguments must start with "
        "(none: any).",
    )
    max_cost_cents = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The most one call may be estimated to cost."
    )
    rate_limit_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Calls per agent per clock hour."
    )
    sensitive = models.BooleanField(
        default=False, help_text="Allowed calls are recorded as sensitive-data accesses."
    )
    params_schema = models.JSONField(
        null=True,
        blank=True,
        help_text="A JSON Schema the arguments must satisfy (missing or mistyped arguments are "
        "refused).",
    )
    enabled = models.BooleanField(
        default=True,
        help_text="A disabled policy is as if absent: the team's or global one applies, else "
        "the action is unknown.",
    )
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "scope", "team"]
        verbose_name_plural = "policies"
        constraints = [
            models.CheckConstraint(
                condition=(Q(scope="agent") & Q(agent__isnull=False) & Q(team=""))
                | (Q(scope="team") & Q(agent__isnull=True) & ~Q(team=""))
                | (Q(scope="global") & Q(agent__isnull=True) & Q(team="")),
                name="policy_scope_target",
                violation_error_message=(
                    "An agent's policy names an agent (no team), a team's a team (no agent), "
                    "and a global one neither."
                ),
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=Q(scope="global"),
                name="policy_global_unique",
                violation_error_message="There is a global policy for this action already.",
            ),
            models.UniqueConstraint(
                fields=["name", "team"],
                condition=Q(scope="team"),
                name="policy_team_unique",
                violation_error_message="This team has a policy for this action already.",
            ),
            models.UniqueConstraint(
                fields=["name", "agent"],
                condition=Q(scope="agent"),
                name="policy_agent_unique",
                violation_error_message="This agent has a policy for this action already.",
            ),
            models.CheckConstraint(
                condition=Q(category__in=Category.values), name="policy_category_known"
            ),
            models.CheckConstraint(
                condition=Q(risk_level__in=RiskLevel.values), name="policy_risk_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope_label})"

    @property
    def scope_label(self) -> str:
        return scope_label(self, everyone="global")


class VersionChange(models.TextChoices):
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    DELETED = "deleted", "Deleted"


class PolicyVersion(models.Model):
    """One version of a policy, as it was: never changed, never deleted.

    The identity (name, scope, team, agent) is copied, so a version outlives its policy.
    """

    policy = models.ForeignKey(
        Policy, on_delete=models.SET_NULL, null=True, blank=True, related_name="versions"
    )
    name = models.CharField(max_length=200)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    team = models.CharField(max_length=100, blank=True)
    agent_name = models.CharField(max_length=100, blank=True)
    version = models.PositiveIntegerField()
    change = models.CharField(max_length=16, choices=VersionChange.choices)
    # Every field of the policy, in the form of the policy file (`guardrails.policyfile`).
    snapshot = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(max_length=300, blank=True, help_text="Where the change came from.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "version"], name="policy_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def scope_label(self) -> str:
        if self.scope == Scope.AGENT:
            return f"agent {self.agent_name}"
        if self.scope == Scope.TEAM:
            return f"team {self.team}"
        return "global"


class PolicySetVersion(models.Model):
    """One row: the version of the policy set, which every change of any policy raises.

    Raised by an UPDATE at the start of each change's transaction, so concurrent changes take
    turns on this row and the number grows in the order they commit: a process that reads it
    after a commit has seen every change up to that number (`guardrails.selectors`)."""

    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"policy set v{self.version}"


class CheckPurpose(models.TextChoices):
    CHECK = "check", "Check"
    CREATE = "create", "Approval request"


class Violation(models.Model):
    """A check that answered deny (SPEC §6): what was refused, and why.

    Values are kept only as excerpts (never a whole value: it may be a secret); all the
    reasons of the answer are kept with it.
    """

    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="violations")
    action = models.CharField(max_length=200)
    code = models.CharField(max_length=40, help_text="The reason that decided.")
    severity = models.CharField(max_length=16, choices=RiskLevel.choices)
    message = models.TextField()
    reasons = models.JSONField(default=list)
    param = models.CharField(max_length=300, blank=True)
    excerpt = models.CharField(max_length=100, blank=True)
    pattern = models.CharField(max_length=500, blank=True)
    params_sha256 = models.CharField(max_length=64)
    policy_version = models.ForeignKey(
        PolicyVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    purpose = models.CharField(max_length=16, choices=CheckPurpose.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Newest first by id (ids grow with time); the page pages by id.
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["agent", "-id"], name="violation_agent"),
            models.Index(fields=["code", "-id"], name="violation_code"),
            models.Index(fields=["action", "-id"], name="violation_action"),
            models.Index(fields=["created_at"], name="violation_time"),
            # The repeated-violations count: one agent's last hour.
            models.Index(fields=["agent", "created_at"], name="violation_agent_time"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.action}: {self.code}"


class ViolationAlert(models.Model):
    """Repeated violations by one agent (SPEC §6): at most one per agent and clock hour."""

    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, related_name="violation_alerts"
    )
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField()
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "window_start"], name="violation_alert_once_per_hour"
            ),
        ]

    def __str__(self) -> str:
        return self.message


class ViolationAlertEmail(EmailOutboxItem):
    """The email about one violation alert, written with it: the outbox sends it."""

    alert = models.OneToOneField(ViolationAlert, on_delete=models.CASCADE, related_name="email")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="violation_alert_email_due",
            ),
        ]

    def __str__(self) -> str:
        return f"email about {self.alert} ({self.status})"


class CheckRecord(models.Model):
    """One check or create as it was asked, kept a week so that a policy import can be tried
    against real traffic first (`policies import --dry-run`). Written in batches from a Redis
    stream (`guardrails.checklog`), never on the check's own path."""

    stream_id = models.CharField(max_length=40, unique=True)
    checked_at = models.DateTimeField()
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=200)
    # None when the arguments were too large to keep (the record then cannot be replayed).
    params = ExactJSONField(null=True, blank=True)
    estimated_cost_cents = models.BigIntegerField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    purpose = models.CharField(max_length=16, choices=CheckPurpose.choices)
    decision = models.CharField(max_length=20)
    codes = models.JSONField(default=list)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["checked_at"], name="check_record_time")]

    def __str__(self) -> str:
        return f"{self.action}: {self.decision}"
