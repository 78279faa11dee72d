"""The audit trail: one row per event, chained by hash (SPEC §7).

Rows are written only by `audit.services.record_event` and never changed: a migration installs
database triggers that refuse UPDATE, DELETE and TRUNCATE. The table holds names and ids as
plain text, not foreign keys, so an event outlives the person or agent it mentions.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import models

from audit.events import ActorType, EventType

# The longest id an event's subject may have; a caller naming a subject by outside text (a
# model's name) cuts it to this and keeps the whole in the payload.
SUBJECT_ID_LENGTH = 128


class AuditEvent(models.Model):
    # The position in the chain, assigned under the append lock: 1, 2, 3, ... without gaps.
    # It is the primary key, so the table carries no second id column and no second index.
    sequence = models.BigIntegerField(primary_key=True)
    occurred_at = models.DateTimeField()
    # No `choices=` on these fields: the vocabulary grows with the product, and each addition
    # would otherwise need a migration. `record_event` refuses unknown values instead.
    event_type = models.CharField(max_length=40)
    actor_type = models.CharField(max_length=8)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_name = models.CharField(max_length=300, blank=True)
    subject_type = models.CharField(max_length=64, blank=True)
    subject_id = models.CharField(max_length=SUBJECT_ID_LENGTH, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-sequence"]
        verbose_name = "audit event"
        # Every filter of the audit page is an equality plus "sequence below N, newest first",
        # so each index ends in `sequence` and serves the keyset page without a sort. The time
        # range is turned into a sequence range through `occurred_at` (it only grows).
        indexes = [
            models.Index(fields=["event_type", "sequence"], name="audit_event_type_seq"),
            models.Index(fields=["actor_type", "actor_id", "sequence"], name="audit_actor_seq"),
            models.Index(fields=["actor_name", "sequence"], name="audit_actor_name_seq"),
            models.Index(
                fields=["subject_type", "subject_id", "sequence"], name="audit_subject_seq"
            ),
            models.Index(fields=["occurred_at"], name="audit_occurred_at"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(sequence__gte=1), name="audit_sequence_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(actor_type__in=ActorType.values), name="audit_actor_type_known"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.event_type}"

    @property
    def event_type_label(self) -> str:
        try:
            return str(EventType(self.event_type).label)
        except ValueError:
            return self.event_type

    @property
    def actor_label(self) -> str:
        if self.actor_type == ActorType.SYSTEM:
            return "System"
        return self.actor_name or f"{self.actor_type} {self.actor_id}"

    @property
    def payload_json(self) -> str:
        return json.dumps(self.payload, sort_keys=True, ensure_ascii=False)

    @property
    def subject_label(self) -> str:
        if not self.subject_type:
            return ""
        return f"{self.subject_type}:{self.subject_id}" if self.subject_id else self.subject_type


class ChainVerification(models.Model):
    """The outcome of one run of the chain verification, so the audit page can show the last."""

    checked_at = models.DateTimeField(auto_now_add=True, db_index=True)
    checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    intact = models.BooleanField()
    events_checked = models.BigIntegerField()
    head_sequence = models.BigIntegerField(null=True, blank=True)
    head_hash = models.CharField(max_length=64, blank=True)
    first_bad_sequence = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    duration_seconds = models.FloatField()

    class Meta:
        ordering = ["-checked_at"]
        get_latest_by = "checked_at"

    def __str__(self) -> str:
        return f"{'intact' if self.intact else 'broken'} at {self.checked_at:%Y-%m-%d %H:%M}"
