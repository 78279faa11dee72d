"""Prices, cost records, budgets and their spend per period window (SPEC §5).

Money is `Decimal` cents throughout, never float. A price row is immutable once a cost used it
(a new price is a new row with a later `effective_from`), and each cost row keeps the price row
it was computed with, so history is never silently recomputed. Spend is kept per
(budget, window): concurrent reports add to one row with an atomic `UPDATE ... SET spent =
spent + x`, and a new period is a new row, so a reset never loses the old period's total.

The rules that write these rows live in `budgets.services` and `budgets.admission`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from oversight.outbox import EmailOutboxItem

# Costs to 1e-8 cent: one token of the cheapest cached input is about 1e-6 cent.
COST_PLACES = 8
PRICE_PLACES = 6
DEFAULT_THRESHOLDS = [80, 95, 100]


def cost_field() -> models.DecimalField:
    return models.DecimalField(max_digits=24, decimal_places=COST_PLACES, default=Decimal(0))


class ModelPrice(models.Model):
    """One version of a model's price, in cents per million tokens."""

    model = models.CharField(max_length=200, help_text="The model name agents report, lower case.")
    effective_from = models.DateTimeField(
        default=timezone.now, help_text="Costs reported from this moment on use this price."
    )
    input_cents_per_mtok = models.DecimalField(
        "input (¢ per million tokens)",
        max_digits=14,
        decimal_places=PRICE_PLACES,
        validators=[MinValueValidator(Decimal(0))],
    )
    output_cents_per_mtok = models.DecimalField(
        "output (¢ per million tokens)",
        max_digits=14,
        decimal_places=PRICE_PLACES,
        validators=[MinValueValidator(Decimal(0))],
    )
    cached_input_cents_per_mtok = models.DecimalField(
        "cached input (¢ per million tokens)",
        max_digits=14,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Empty when the model has no cache discount: cached tokens cost full input.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "effective_from"], name="price_version_unique"
            ),
            models.CheckConstraint(
                condition=Q(input_cents_per_mtok__gte=0)
                & Q(output_cents_per_mtok__gte=0)
                & (
                    Q(cached_input_cents_per_mtok__isnull=True)
                    | Q(cached_input_cents_per_mtok__gte=0)
                ),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d %H:%M}"


class CostRecord(models.Model):
    """One LLM call an agent reported, with its cost computed at ingestion."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="costs")
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveBigIntegerField()
    output_tokens = models.PositiveBigIntegerField()
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    cost_cents = cost_field()
    # The price version used; null (and `unknown_model`) when no price matched the model.
    price = models.ForeignKey(
        ModelPrice, on_delete=models.PROTECT, null=True, blank=True, related_name="costs"
    )
    unknown_model = models.BooleanField(default=False)
    task_id = models.CharField(max_length=200, blank=True)
    success = models.BooleanField(default=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"], name="cost_created"),
            models.Index(fields=["agent", "-created_at"], name="cost_agent_recent"),
        ]
        constraints = [
            # A retried report (same Idempotency-Key) is recorded once.
            models.UniqueConstraint(
                fields=["agent", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="cost_idempotency_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.cost_cents} ¢"


class Scope(models.TextChoices):
    AGENT = "agent", "Agent"
    TEAM = "team", "Team"
    GLOBAL = "global", "Everything"


def scope_label(row: Any, *, everyone: str) -> str:
    """Whom a scoped row (a budget, a policy: `scope`, `agent`, `team`) applies to, in words;
    `everyone` names the global scope."""
    if row.scope == Scope.AGENT:
        return f"agent {row.agent}" if row.agent_id else "an agent"
    if row.scope == Scope.TEAM:
        return f"team {row.team}"
    return everyone


class Period(models.TextChoices):
    HOURLY = "hourly", "Hourly"
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class Mode(models.TextChoices):
    """What a budget does at its limit (SPEC §5)."""

    ENFORCE = "enforce", "Enforce: refuse past the limit"
    ALERT_ONLY = "alert-only", "Alert only"
    ASK = "ask", "Ask a person past the limit"


class Budget(models.Model):
    """A spending limit for an agent, a team or everything, per period (SPEC §5)."""

    scope = models.CharField(max_length=16, choices=Scope.choices)
    agent = models.ForeignKey(
        "agents.Agent", on_delete=models.CASCADE, null=True, blank=True, related_name="budgets"
    )
    team = models.CharField(max_length=100, blank=True)
    period = models.CharField(max_length=16, choices=Period.choices)
    limit_cents = models.PositiveBigIntegerField(validators=[MinValueValidator(1)])
    thresholds = models.JSONField(
        default=list, help_text="Alert at these percentages of the limit, e.g. [80, 95, 100]."
    )
    mode = models.CharField(
        max_length=16,
        choices=Mode.choices,
        default=Mode.ENFORCE,
        help_text=(
            "At the limit: refuse new actions and requests (enforce), only alert, or have a "
            "person approve each (ask; an approval raises this period's cap). Cost reports are "
            "always recorded."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["scope", "team", "period"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(scope="agent") & Q(agent__isnull=False) & Q(team=""))
                | (Q(scope="team") & Q(agent__isnull=True) & ~Q(team=""))
                | (Q(scope="global") & Q(agent__isnull=True) & Q(team="")),
                name="budget_scope_target",
                violation_error_message=(
                    "An agent budget names an agent (no team), a team budget a team (no agent), "
                    "and a budget of everything neither."
                ),
            ),
            models.CheckConstraint(condition=Q(period__in=Period.values), name="budget_period"),
            models.CheckConstraint(condition=Q(mode__in=Mode.values), name="budget_mode"),
            models.CheckConstraint(condition=Q(limit_cents__gt=0), name="budget_limit_positive"),
            # One budget per target and period: set_budget updates it.
            models.UniqueConstraint(
                fields=["agent", "period"],
                condition=Q(scope="agent"),
                name="budget_agent_unique",
                violation_error_message="This agent has a budget for that period already.",
            ),
            models.UniqueConstraint(
                fields=["team", "period"],
                condition=Q(scope="team"),
                name="budget_team_unique",
                violation_error_message="This team has a budget for that period already.",
            ),
            models.UniqueConstraint(
                fields=["period"],
                condition=Q(scope="global"),
                name="budget_global_unique",
                violation_error_message="There is a budget of everything for that period already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_period_display()} budget of {self.target_label}"

    @property
    def target_label(self) -> str:
        return scope_label(self, everyone="everything")

    @property
    def enforce(self) -> bool:
        return self.mode == Mode.ENFORCE


class BudgetWindow(models.Model):
    """A budget's spend in one period window; its own row, so history survives resets."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="windows")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    spent_cents = cost_field()
    # Estimates of admitted approval requests whose actual cost has not arrived yet.
    reserved_cents = cost_field()
    # What people's approvals added to the limit for this window (a budget in `ask` mode).
    raised_cents = cost_field()
    calls = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["budget", "-window_start"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "window_start"], name="window_unique"),
            models.CheckConstraint(
                condition=Q(window_end__gt=models.F("window_start")), name="window_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.budget} from {self.window_start:%Y-%m-%d %H:%M}"


class Reservation(models.Model):
    """An approval request's estimated cost held in a budget window until its actual cost
    arrives (a cost report with the request's id as `task_id`) or it ends without approval."""

    request = models.ForeignKey(
        "approvals.ApprovalRequest", on_delete=models.CASCADE, related_name="reservations"
    )
    window = models.ForeignKey(BudgetWindow, on_delete=models.CASCADE, related_name="reservations")
    amount_cents = cost_field()
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "window"], name="reservation_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_cents} ¢ for request {self.request_id}"


class AlertKind(models.TextChoices):
    THRESHOLD = "threshold", "Threshold reached"
    UNKNOWN_MODEL = "unknown_model", "Unknown model"


# An agent that reports a new unknown model in every call would otherwise mail the managers on
# every call: past this many a day, its unknown models are recorded (and flagged) but not
# alerted, and the last alert says so.
UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY = 5


class Alert(models.Model):
    """A fired alert. Unique constraints make each fire once: per (budget, window, threshold),
    and per (agent, unknown model, day), with at most UNKNOWN_MODEL_ALERTS_PER_AGENT_PER_DAY
    of those per agent and day (`ordinal` numbers them, uniquely)."""

    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    budget = models.ForeignKey(
        Budget, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    # The agent that reported an unknown model (empty on alerts from before it was kept).
    agent = models.ForeignKey(
        "agents.Agent",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="unknown_model_alerts",
    )
    window_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True)
    ordinal = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["-created_at"], name="alert_recent")]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "window_start", "threshold"],
                condition=Q(kind="threshold"),
                name="alert_threshold_once",
            ),
            models.UniqueConstraint(
                fields=["agent", "model", "window_start"],
                condition=Q(kind="unknown_model"),
                name="alert_unknown_model_once",
            ),
            models.UniqueConstraint(
                fields=["agent", "window_start", "ordinal"],
                condition=Q(kind="unknown_model"),
                name="alert_unknown_model_numbered",
            ),
        ]

    def __str__(self) -> str:
        return self.message


class AlertEmail(EmailOutboxItem):
    """The email about one alert (SPEC §8), written with the alert: the outbox sends it."""

    alert = models.OneToOneField(Alert, on_delete=models.CASCADE, related_name="email")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="alert_email_due"
            ),
        ]

    def __str__(self) -> str:
        return f"email about {self.alert} ({self.status})"
