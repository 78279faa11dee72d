"""Filling the audit table fast, for scale tests and the verification benchmark.

`record_event` takes the append lock and makes three round trips per event; a million of them
would take minutes. This computes the same chain in Python (with the same `compute_hash`) and
streams the rows in with COPY on PostgreSQL, or bulk_create on SQLite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.chain import CANONICAL_FIELDS, canonical_json, compute_hash
from audit.events import EventType
from audit.models import AuditEvent
from audit.services import APPEND_LOCK_KEY

COLUMNS = (*CANONICAL_FIELDS, "prev_hash", "hash")

_TYPES = [
    EventType.REQUEST_CREATED,
    EventType.REQUEST_VOTED,
    EventType.REQUEST_DECIDED,
    EventType.LOGIN_SUCCEEDED,
    EventType.GUARDRAIL_VIOLATION,
]


def synthetic_events(
    count: int, *, start_sequence: int, prev_hash: str, start_time: dt.datetime
) -> Iterator[dict[str, Any]]:
    """`count` chained events with a realistic mix of types, actors, subjects and payloads."""
    for offset in range(count):
        sequence = start_sequence + offset
        kind = _TYPES[sequence % len(_TYPES)]
        by_agent = kind in (EventType.REQUEST_CREATED, EventType.GUARDRAIL_VIOLATION)
        actor_number = sequence % 50 if by_agent else sequence % 20
        event = {
            "sequence": sequence,
            "occurred_at": start_time + dt.timedelta(milliseconds=offset),
            "event_type": str(kind),
            "actor_type": "agent" if by_agent else "user",
            "actor_id": str(actor_number + 1),
            "actor_name": f"bot-{actor_number}" if by_agent else f"person{actor_number}",
            "subject_type": "approval_request",
            "subject_id": str(sequence // 4 + 1),
            "payload": {
                "risk": ["low", "medium", "high", "critical"][sequence % 4],
                "action": "deploy",
                "cost_usd": "0.0125",
                "note": f"synthetic event {sequence}",
            },
            "prev_hash": prev_hash,
        }
        event["hash"] = prev_hash = compute_hash(prev_hash, event)
        yield event


def bulk_append(count: int, *, batch: int = 10_000) -> None:
    """Append `count` synthetic events after the current head, correctly chained."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [APPEND_LOCK_KEY])
        head = AuditEvent.objects.order_by("-sequence").values_list("sequence", "hash").first()
        events = synthetic_events(
            count,
            start_sequence=head[0] + 1 if head else 1,
            prev_hash=head[1] if head else "0" * 64,
            start_time=timezone.now(),
        )
        if connection.vendor == "postgresql":
            copy_sql = f"COPY audit_auditevent ({', '.join(COLUMNS)}) FROM STDIN"
            with connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
                for event in events:
                    event["payload"] = canonical_json(event["payload"])
                    copy.write_row([event[column] for column in COLUMNS])
        else:
            rows: list[AuditEvent] = []
            for event in events:
                rows.append(AuditEvent(**event))
                if len(rows) >= batch:
                    AuditEvent.objects.bulk_create(rows)
                    rows.clear()
            AuditEvent.objects.bulk_create(rows)
