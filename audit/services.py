"""Writing the audit trail: `record_event` is the only way a row gets into it (SPEC §7).

Call it from a service function, inside the transaction that makes the change, as its *last*
database step: the append lock is held from the call until that transaction commits, so every
audited transaction in the system queues behind it. Keep the work after it short.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, models, transaction
from django.utils import timezone

from audit.chain import (
    GENESIS_HASH,
    canonical_json,
    canonical_parts,
    compute_hash,
    normalize_payload,
)
from audit.events import ActorType, EventType
from audit.integrity import verify_chain
from audit.models import SUBJECT_ID_LENGTH, AuditEvent, ChainVerification
from oversight import logs

if TYPE_CHECKING:
    from accounts.models import User


class Actor(Protocol):
    """Who did something: a person (accounts.User) or an agent (agents.Agent). The audit trail
    knows them by these two names only, so it depends on neither app."""

    audit_actor_type: ClassVar[str]  # an ActorType

    @property
    def pk(self) -> Any: ...

    @property
    def audit_name(self) -> str: ...


# The key of the PostgreSQL advisory lock that serialises appends: the bytes "ovs-audi" read as
# a big-endian signed 64-bit integer. Nothing else in the database may use this key.
APPEND_LOCK_KEY = 8_031_166_050_034_607_465

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# `EventType.values` builds a new list of all ~25 types on every access; every audited change
# checks its type, so the check reads a set built once.
_EVENT_TYPES = frozenset(EventType.values)


def record_event(
    *,
    event_type: str,
    actor: Actor | None = None,
    subject: models.Model | tuple[str, str] | None = None,
    payload: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction, and return it.

    `actor` is the person or agent who did it; None (or an anonymous user) means the system.
    `subject` is what it was done to: a saved model instance, or an explicit `(type, id)`.
    `payload` holds the details as JSON values (see `audit.chain.normalize_payload` for what is
    accepted and how dates, UUIDs and Decimals are written); never put secrets in it.

    Raises ValueError/TypeError for an unknown event type or a payload that cannot be hashed
    reproducibly, before anything is written. If the surrounding transaction rolls back, the
    event is gone with it, which is the point: the trail records what happened, not attempts.
    """
    if event_type not in _EVENT_TYPES:
        raise ValueError(f"Unknown audit event type {event_type!r}; add it to audit.events.")
    actor_type, actor_id, actor_name = _describe_actor(actor)
    subject_type, subject_id = _describe_subject(subject)
    body = normalize_payload(payload)

    # savepoint=False: inside an outer transaction a failure here must doom that transaction
    # (a change without its audit event may not commit), and it saves two round trips.
    if connection.vendor == "postgresql":
        with transaction.atomic(savepoint=False):
            event = _append_in_database(
                event_type, actor_type, actor_id, actor_name, subject_type, subject_id, body
            )
        logs.bind(audit_sequence=event.sequence)  # for the request's or task's next log lines
        return event
    with transaction.atomic(savepoint=False):
        head_sequence, head_hash, head_time, now = _lock_and_read_head()
        # Monotonic even if the clock steps back (NTP) between two appends.
        occurred_at = max(now, head_time) if head_time else now
        fields = {
            "sequence": head_sequence + 1,
            "occurred_at": occurred_at,
            "event_type": str(event_type),
            "actor_type": actor_type,
            "actor_id": actor_id,
            "actor_name": actor_name,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "payload": body,
        }
        event = AuditEvent(**fields, prev_hash=head_hash, hash=compute_hash(head_hash, fields))
        event.save(force_insert=True)
    logs.bind(audit_sequence=event.sequence)
    return event


def _append_in_database(
    event_type: str,
    actor_type: str,
    actor_id: str,
    actor_name: str,
    subject_type: str,
    subject_id: str,
    payload: dict[str, Any],
) -> AuditEvent:
    """PostgreSQL: take the append lock (APPEND_LOCK_KEY), read the head, hash and insert, in
    one round trip (`audit_append`, migration 0003): the same steps as the SQLite path, with
    the lock held for less time. The database's clock is read under the lock: one clock for
    every web and worker host, and later events never get earlier times."""
    fields = [str(event_type), actor_type, actor_id, actor_name, subject_type, subject_id]
    parts = canonical_parts(
        fields[0], actor_type, actor_id, actor_name, subject_type, subject_id, payload
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM audit_append(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [*fields, canonical_json(payload), *parts],
        )
        sequence, occurred_at, prev_hash, hash_ = cursor.fetchone()
    event = AuditEvent(
        sequence=sequence,
        occurred_at=occurred_at,
        event_type=fields[0],
        actor_type=actor_type,
        actor_id=actor_id,
        actor_name=actor_name,
        subject_type=subject_type,
        subject_id=subject_id,
        payload=payload,
        prev_hash=prev_hash,
        hash=hash_,
    )
    event._state.adding = False
    event._state.db = connection.alias
    return event


def _lock_and_read_head() -> tuple[int, str, dt.datetime | None, dt.datetime]:
    """SQLite: take the append lock, then read the last event and the clock under it.

    Returns (last sequence, last hash, last occurred_at, now); (0, GENESIS_HASH, None, now) on
    an empty table. SQLite has one writer at a time. The project opens every transaction with
    BEGIN IMMEDIATE (settings: transaction_mode), which takes the write lock before the first
    read, so the head read below cannot be overtaken. audit.checks insists on it.
    """
    if connection.vendor != "sqlite":
        raise ImproperlyConfigured(f"The audit trail has no append lock for {connection.vendor}.")
    if connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE":
        raise ImproperlyConfigured("The audit trail needs SQLite's transaction_mode IMMEDIATE.")
    head = (
        AuditEvent.objects.order_by("-sequence")
        .values_list("sequence", "hash", "occurred_at")
        .first()
    )
    now = timezone.now()
    if head is None:
        return 0, GENESIS_HASH, None, now
    return head[0], head[1], head[2], now


def _describe_actor(actor: object) -> tuple[str, str, str]:
    kind = getattr(actor, "audit_actor_type", None)
    if kind not in (ActorType.USER, ActorType.AGENT):
        # None, AnonymousUser (a failed login) or anything unrecognised: the system acted.
        return ActorType.SYSTEM, "", ""
    return kind, "" if actor.pk is None else str(actor.pk), actor.audit_name  # type: ignore[attr-defined]


def _describe_subject(subject: models.Model | tuple[str, str] | None) -> tuple[str, str]:
    if subject is None:
        return "", ""
    if isinstance(subject, models.Model):
        # ApiKey -> "api_key", ApprovalRequest -> "approval_request".
        kind = _CAMEL_BOUNDARY.sub("_", subject._meta.object_name or "").lower()
        return kind, _pk_text(subject)
    if isinstance(subject, tuple) and len(subject) == 2:
        kind, ident = (str(part) for part in subject)
        if not kind or len(kind) > 64 or len(ident) > SUBJECT_ID_LENGTH:
            raise ValueError(
                f"An audit subject needs a type (<= 64) and an id (<= {SUBJECT_ID_LENGTH}): "
                f"{subject!r}"
            )
        return kind, ident
    raise TypeError(f"An audit subject is a model instance or a (type, id) tuple, not {subject!r}.")


def _pk_text(instance: models.Model) -> str:
    return "" if instance.pk is None else str(instance.pk)


def run_verification(*, checked_by: User | None = None) -> ChainVerification:
    """Verify the whole chain now and keep the outcome, which the audit page shows."""
    result = verify_chain()
    return ChainVerification.objects.create(
        checked_by=checked_by,
        intact=result.intact,
        events_checked=result.events_checked,
        head_sequence=result.head_sequence,
        head_hash=result.head_hash,
        first_bad_sequence=result.first_bad_sequence,
        problem=result.problem,
        duration_seconds=result.duration_seconds,
    )
