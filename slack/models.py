"""Slack's side of the approvals (SPEC §13): the channel of each tier, who is who, the messages
posted, the outbox of Web API calls, and the interactions already seen (replays refused).

Rows here are written by `slack.services` and `slack.delivery`; the admin edits channels and
links through them.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.models import Tier
from oversight.outbox import OutboxItem

# Slack's ids: channels C…/G… (private), users U…/W… (Enterprise Grid), teams T…/E….
channel_id_validator = RegexValidator(
    r"^[CG][A-Z0-9]{2,}$", "A Slack channel id, like C0123456789 (not the channel's name)."
)
user_id_validator = RegexValidator(r"^[UW][A-Z0-9]{2,}$", "A Slack user id, like U0123456789.")


class SlackChannel(models.Model):
    """Where the requests of a tier are posted: at creation to the first tier's channel, and to
    the next tier's channel when a request escalates there (admin-editable)."""

    tier = models.CharField(max_length=32, choices=Tier.choices, unique=True)
    channel_id = models.CharField(
        max_length=32,
        validators=[channel_id_validator],
        help_text="The channel's id (in Slack: the channel's details, at the bottom). Invite the "
        "Oversight app to the channel, or posting fails with not_in_channel.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tier"]

    def __str__(self) -> str:
        return f"{Tier(self.tier).label}: {self.channel_id}"


class LinkMethod(models.TextChoices):
    EMAIL = "email", "Confirmed email address"
    CONFIRMED = "confirmed", "Confirmed by the person, signed in"
    ADMIN = "admin", "Set by an admin"


class SlackLink(models.Model):
    """A Slack user who acts as an Oversight person: their clicks in Slack are that person's
    votes, with that person's rights. One Slack account per person and per Slack user."""

    slack_user_id = models.CharField(max_length=32, unique=True, validators=[user_id_validator])
    slack_team_id = models.CharField(max_length=32, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_link"
    )
    method = models.CharField(max_length=16, choices=LinkMethod.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.slack_user_id} → {self.user}"


class SlackMessage(models.Model):
    """A request's message in one channel, as Slack identifies it (`ts`), to update in place."""

    request = models.ForeignKey(
        "approvals.ApprovalRequest", on_delete=models.CASCADE, related_name="slack_messages"
    )
    channel_id = models.CharField(max_length=32)
    ts = models.CharField(max_length=32)
    posted_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request", "channel_id"], name="slack_one_message_per_channel"
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} {self.ts}"


class CallKind(models.TextChoices):
    POST = "post", "Post the request (chat.postMessage)"
    UPDATE = "update", "Update its messages (chat.update)"
    REPLY = "reply", "Reply to one person (chat.postEphemeral)"


class SlackDelivery(OutboxItem):
    """A Web API call of the outbox (`slack.delivery`). Messages are composed when sent, from the
    request as it is then, so a late post or a retried update shows the latest state."""

    kind = models.CharField(max_length=16, choices=CallKind.choices)
    request = models.ForeignKey(
        "approvals.ApprovalRequest",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="slack_deliveries",
    )
    channel_id = models.CharField(max_length=32, blank=True)  # post, reply
    slack_user_id = models.CharField(max_length=32, blank=True)  # reply: who sees it
    text = models.TextField(blank=True)  # reply
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "Slack deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="slack_due"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})"


class SlackInteraction(models.Model):
    """The signature of every interaction accepted within Slack's 5-minute window: a second one
    with the same signature is a replay (the unique constraint decides, across processes).
    Rows older than the window are purged: their timestamps are refused anyway."""

    signature = models.CharField(max_length=100, unique=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.signature[:16]
