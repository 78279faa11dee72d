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
from oversight.outbox import EmailOutboxItem

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


# --- the transparency log (SPEC §7): the chain's hashes as the leaves of a Merkle tree ---------


class TreeState(models.Model):
    """One row: how many leaves (events, in sequence order) `MerkleNode` holds the tree of."""

    size = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"tree of {self.size} leaves"


class MerkleNode(models.Model):
    """A complete subtree of the log's Merkle tree: level L, index i covers leaves
    [i·2^L, (i+1)·2^L) (`audit.merkle`). Written once, when its last leaf is added
    (`audit.tree.extend`), never changed. Level 0 is not stored: a leaf's hash comes from its
    event's hash. Derived data: verification recomputes it from the events."""

    pk = models.CompositePrimaryKey("level", "index")
    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"


class Checkpoint(models.Model):
    """A signed statement of the log's size and root (C2SP `tlog-checkpoint` signed note,
    Ed25519). Append-only in the database (as the events are) and written to
    OVERSIGHT_CHECKPOINT_DIR as well."""

    size = models.BigIntegerField(primary_key=True)
    root_hash = models.BinaryField(max_length=32)
    origin = models.CharField(max_length=200)
    note = models.TextField(help_text="The whole signed note, as published.")
    public_key = models.CharField(max_length=300, help_text="The signer's vkey.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-size"]
        get_latest_by = "size"

    def __str__(self) -> str:
        return f"checkpoint {self.size}"


class SiemCursor(models.Model):
    """How far the audit stream to one SIEM destination got (SPEC §7): the last sequence it
    acknowledged, so delivery resumes there, in order, after any outage or restart."""

    destination = models.CharField(max_length=300, unique=True)
    delivered_sequence = models.BigIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts in a row.")
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.destination} at {self.delivered_sequence}"


class SummaryEmail(EmailOutboxItem):
    """The weekly compliance summary for one period (SPEC §7), written by beat once per period
    and sent by the outbox to the compliance staff."""

    period_start = models.DateTimeField(unique=True)
    period_end = models.DateTimeField()

    class Meta:
        ordering = ["-period_start"]

    def __str__(self) -> str:
        return f"compliance summary from {self.period_start:%Y-%m-%d} ({self.status})"
