"""The log of checks, for `policies import --dry-run` (SPEC §6: replay the last 7 days).

A check appends its inputs to a Redis stream inside its one Redis round trip
(`guardrails.counters`), so the allow path writes nothing to the database. Beat drains the
stream into `CheckRecord` rows every timer tick, in batches; a row's unique stream id makes a
batch written twice (a drain killed before it trimmed) harmless. Records older than the replay
window are purged with the other operational rows. If Redis loses the stream (a restart without
persistence), the dry run replays fewer checks; it says how many it had.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from agents.models import Agent
from guardrails.counters import CHECK_LOG
from guardrails.models import CheckRecord
from oversight import instruments
from oversight.redis_clients import quick_client

BATCH = 2_000
KEEP_DAYS = 8  # a little longer than the replay looks back


def drain(limit: int = 10 * BATCH) -> int:
    """Move up to `limit` logged checks from Redis to the database; return how many."""
    client = quick_client()
    moved = 0
    while moved < limit:
        entries = client.xrange(CHECK_LOG, count=BATCH)
        if not entries:
            break
        known = set(Agent.objects.values_list("pk", flat=True))
        rows = [row for row in (_row(ident, fields, known) for ident, fields in entries) if row]
        CheckRecord.objects.bulk_create(rows, ignore_conflicts=True)
        last = entries[-1][0]
        # Everything up to the last id written is gone from the stream (XTRIM MINID keeps ids
        # at or above the one given, so delete the last entry by its id as well).
        client.xtrim(CHECK_LOG, minid=_text(last), approximate=False)
        client.xdel(CHECK_LOG, _text(last))
        _count(rows)
        moved += len(entries)
        if len(entries) < BATCH:
            break
    return moved


def _row(ident: Any, fields: Any, known: set[int]) -> CheckRecord | None:
    """A stream entry as a record (the client answers bytes)."""
    text = {_text(key): _text(value) for key, value in fields.items()}
    ident = _text(ident)
    try:
        agent_id = int(text["agent"])
        milliseconds = int(ident.split("-")[0])
        params: Any = json.loads(text["params"]) if text.get("params") else None
        cost = int(text["cost"]) if text.get("cost") else None
        confidence = float(text["confidence"]) if text.get("confidence") else None
    except (KeyError, ValueError):
        return None  # not written by this version of the check: nothing to replay
    if agent_id not in known:
        return None
    return CheckRecord(
        stream_id=ident,
        checked_at=datetime.fromtimestamp(milliseconds / 1000, tz=UTC),
        agent_id=agent_id,
        action=text.get("action", "")[:200],
        params=params,
        estimated_cost_cents=cost,
        confidence=confidence,
        purpose=text.get("purpose", "")[:16],
        decision=text.get("decision", "")[:20],
        codes=text.get("codes", "").split(),
    )


def _count(rows: list[CheckRecord]) -> None:
    """The drained checks' decisions and reason codes (SPEC §12), counted here rather than on
    the check's path, which has no time to spare. A batch drained twice (killed before the trim)
    is counted twice; the records are not."""
    decisions = Counter((row.purpose, row.decision) for row in rows)
    codes = Counter((row.decision, code) for row in rows for code in row.codes)
    for (purpose, decision), n in decisions.items():
        instruments.GUARDRAIL_CHECKS.labels(purpose=purpose, decision=decision).inc(n)
    for (decision, code), n in codes.items():
        instruments.GUARDRAIL_CHECK_CODES.labels(decision=decision, code=code).inc(n)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def purge() -> int:
    """Drop records older than the replay window."""
    cutoff = timezone.now() - timedelta(days=KEEP_DAYS)
    deleted, _ = CheckRecord.objects.filter(checked_at__lt=cutoff).delete()
    return deleted
