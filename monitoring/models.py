"""Monitoring (SPEC §12): the alerts beat raises on the seed's thresholds, and the weekly
fairness report. The figures themselves are not stored: `monitoring.health`,
`monitoring.fairness` and `monitoring.overseers` compute them in SQL from what the other apps
recorded."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from oversight.outbox import EmailOutboxItem


class Metric(models.TextChoices):
    """What an alert watches (the seed's alert thresholds, §8.2)."""

    SUCCESS_RATE = "success_rate", "Success rate below 85 %"
    COST_SPIKE = "cost_spike", "Cost spike: an hour above 2x the normal hourly cost"
    ESCALATION_RATE = "escalation_rate", "Escalation rate above 30 %"
    BUDGET_EXCEEDED = "budget_exceeded", "Budget exceeded"
    REPEATED_VIOLATIONS = "repeated_violations", "Repeated guardrail violations"


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class MonitorAlert(models.Model):
    """One alert: a metric over its threshold for one agent (or budget) in one window. It fires
    once per (metric, subject, window), by the unique constraint, and resolves by itself when a
    later evaluation finds the condition cleared."""

    metric = models.CharField(max_length=24, choices=Metric.choices)
    # What it is about: an agent, or for a budget, the budget's name (`subject`).
    agent = models.ForeignKey(
        "agents.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="monitor_alerts",
    )
    subject = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    state = models.CharField(max_length=16, choices=AlertState.choices, default=AlertState.FIRING)
    value = models.FloatField(help_text="The measured value when it fired.")
    threshold = models.FloatField()
    message = models.TextField()
    # The counts behind the value, e.g. {"outcomes": 40, "successes": 30}.
    evidence = models.JSONField(default=dict)
    fired_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "subject", "window_start"], name="one_alert_per_metric_window"
            ),
        ]
        indexes = [
            models.Index(fields=["state", "-fired_at"], name="monitor_alert_state"),
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()}: {self.subject} ({self.state})"


class MonitorAlertEmail(EmailOutboxItem):
    """The email about one alert firing, written with it: the outbox sends it."""

    alert = models.OneToOneField(MonitorAlert, on_delete=models.CASCADE, related_name="email")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="monitor_alert_email_due",
            ),
        ]

    def __str__(self) -> str:
        return f"email about {self.alert} ({self.status})"


class FairnessReport(EmailOutboxItem):
    """The weekly fairness report to the managers (SPEC §12): the week's figures as they were
    computed when it was written, one per week (Monday 00:00 UTC starts a week)."""

    week_start = models.DateTimeField(unique=True)
    week_end = models.DateTimeField()
    figures = models.JSONField()

    class Meta:
        ordering = ["-week_start"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="fairness_report_due",
            ),
        ]

    def __str__(self) -> str:
        return f"fairness report for the week of {self.week_start:%Y-%m-%d} ({self.status})"


class AgentDay(models.Model):
    """One agent's figures for one finished UTC day (`monitoring.rollup`): what the page would
    otherwise aggregate from every outcome, request, vote and violation of that day again."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    outcomes = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    spend_cents = models.FloatField(default=0.0)
    violations = models.PositiveIntegerField(default=0)
    approvals = models.PositiveIntegerField(default=0)
    rejections = models.PositiveIntegerField(default=0)
    changes = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    escalated = models.PositiveIntegerField(default=0)
    decided = models.PositiveIntegerField(default=0)
    overridden = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0)
    resolution_seconds = models.FloatField(default=0.0)
    transitions = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "agent"], name="one_rollup_per_agent_day")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} on {self.day}"


class RolledDay(models.Model):
    """A UTC day whose `AgentDay` rows were computed, and when: rolled up after the day ended
    (and its last writes committed), its rows are final and the page reads them."""

    day = models.DateField(primary_key=True)
    rolled_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.day} rolled up at {self.rolled_at:%Y-%m-%d %H:%M}"
