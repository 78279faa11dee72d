"""Verifying the audit chain: used by `manage.py verify_audit` and the audit page.

The verifier walks every event in sequence order and stops at the first one that does not fit:
a sequence number out of place (a row deleted or renumbered), a `prev_hash` that is not the
previous event's hash (a row replaced, inserted or moved), a hash that does not match the
event's own content (a row edited), or a time earlier than the previous event's.

It reads plain tuples through a server-side cursor, so memory stays flat for any table size,
and it must be fast: SPEC §10 asks for a million events in under 10 s. What the chain alone
cannot show is events cut off its *end*, or a chain re-hashed from an edited event onwards by
whoever holds the database: in the same pass the verifier rebuilds the Merkle tree (RFC 6962)
from the events and compares its root with every signed checkpoint (each signed by a key the
trail trusts), and a log shorter than the latest checkpoint fails too.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Func, QuerySet, TextField
from django.db.models.functions import Cast

from audit import merkle, signing, tree
from audit.chain import CANONICAL_FIELDS, GENESIS_HASH, canonical_bytes, chain_hash, event_text
from audit.events import EventType
from audit.models import AuditEvent, Checkpoint

CHUNK_SIZE = 5_000
# `chain.format_timestamp` in SQL: UTC, six digits of microseconds, a `Z`.
CANONICAL_TIME = Func(
    F("occurred_at"),
    template="to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    output_field=TextField(),
)

# json.loads minus its two whitespace regex matches per call: the database hands the payload
# over without surrounding whitespace, and this runs once for every event verified.
# (Set in JSONDecoder.__init__, so the type stubs do not know it.)
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


@dataclass(frozen=True)
class VerificationResult:
    intact: bool
    events_checked: int
    head_sequence: int | None
    head_hash: str
    duration_seconds: float
    first_bad_sequence: int | None = None
    problem: str = ""
    # The latest signed checkpoint the log was found consistent with (its size), if any.
    checkpoint_size: int | None = None

    @property
    def events_per_second(self) -> float:
        return self.events_checked / self.duration_seconds if self.duration_seconds else 0.0

    def summary(self) -> str:
        if not self.intact:
            return f"Audit chain BROKEN at sequence {self.first_bad_sequence}: {self.problem}"
        if not self.events_checked:
            return "Audit chain intact: no events yet."
        covered = (
            f"consistent with the signed checkpoint of {self.checkpoint_size} events, "
            if self.checkpoint_size
            else "no signed checkpoint yet, "
        )
        return (
            f"Audit chain intact: {self.events_checked} events, {covered}"
            f"head sequence {self.head_sequence}, head hash {self.head_hash}, "
            f"verified in {self.duration_seconds:.2f} s ({self.events_per_second:,.0f} events/s)"
        )


def verify_chain(*, chunk_size: int = CHUNK_SIZE) -> VerificationResult:
    """Recompute the whole chain from the genesis value and report the first break, if any."""
    started = time.perf_counter()
    # The payload is selected as text and parsed below: that leaves PostgreSQL rows with no
    # per-row converter for Django to run.
    queryset = (
        AuditEvent.objects.order_by("sequence")
        .annotate(payload_text=Cast("payload", TextField()))
        .values_list(*CANONICAL_FIELDS[:-1], "payload_text", "prev_hash", "hash")
    )
    # PostgreSQL writes the time in its canonical text itself (`chain.format_timestamp`'s form,
    # which sorts as the times do): formatting a datetime per event in Python was 1.5 s of a
    # million events' 10 (docs/performance.md).
    timed_as_text = connection.vendor == "postgresql"
    if timed_as_text:
        queryset = queryset.annotate(occurred_text=CANONICAL_TIME).values_list(
            "sequence",
            "occurred_text",
            *CANONICAL_FIELDS[2:-1],
            "payload_text",
            "prev_hash",
            "hash",
        )
    expected = 1  # the sequence number the next row must have
    prev_hash = GENESIS_HASH
    prev_time = None
    # The signed checkpoints, oldest first: the log's root at each one's size must be its root
    # (events re-hashed downstream, or cut off the end, do not match), and each must carry a
    # signature by a key the trail trusts.
    signed, bad_checkpoint = _checkpoints()
    consistent: int | None = None
    frontier: list[tuple[int, bytes]] = []
    leaf_hash, node_hash = merkle.leaf_hash, merkle.node_hash

    def result(bad_sequence: int | None = None, problem: str = "") -> VerificationResult:
        return VerificationResult(
            intact=bad_sequence is None,
            events_checked=expected - 1,
            head_sequence=expected - 1 or None,
            head_hash=prev_hash,
            duration_seconds=time.perf_counter() - started,
            first_bad_sequence=bad_sequence,
            problem=problem,
            checkpoint_size=consistent,
        )

    if bad_checkpoint is not None:
        size, problem = bad_checkpoint
        return result(size, problem)

    # One transaction, so that the cursor streams (outside one, PostgreSQL materialises a
    # held cursor) and reads one snapshot: a gapless prefix of the chain, because appends
    # commit in sequence order under the append lock.
    with transaction.atomic(), contextlib.closing(_stream(queryset, chunk_size)) as rows:
        for row in rows:
            sequence = row[0]
            if sequence != expected:
                if sequence < expected:  # cannot happen while `sequence` is the primary key
                    return result(sequence, f"sequence {sequence} appears twice.")
                missing = (
                    f"event {expected} is missing"
                    if sequence == expected + 1
                    else f"events {expected} to {sequence - 1} are missing"
                )
                return result(expected, f"{missing} (the next event is {sequence}).")
            if row[9] != prev_hash:
                return result(
                    sequence,
                    f"its prev_hash is not the hash of event {sequence - 1} "
                    "(an event was replaced, inserted or moved).",
                )
            try:
                payload, end = _scan_json(row[8], 0)
            except (StopIteration, ValueError):
                end = -1
            if end != len(row[8]):
                return result(sequence, "its payload is not valid JSON (it was edited).")
            if timed_as_text:
                canonical = event_text(
                    row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], payload
                ).encode("ascii")
            else:
                canonical = canonical_bytes(
                    row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], payload
                )
            if chain_hash(prev_hash, canonical) != row[10]:
                return result(sequence, "its content does not match its hash (it was edited).")
            if prev_time is not None and row[1] < prev_time:
                return result(sequence, "its time is earlier than the previous event's.")
            prev_hash = row[10]
            prev_time = row[1]
            # The Merkle tree's right edge, with this event's leaf added (`audit.tree`).
            frontier.append((0, leaf_hash(bytes.fromhex(prev_hash))))
            while len(frontier) > 1 and frontier[-1][0] == frontier[-2][0]:
                level, right = frontier.pop()
                frontier[-1] = (level + 1, node_hash(frontier[-1][1], right))
            if signed and signed[0][0] == sequence:
                size, root = signed.pop(0)
                if tree.fold(frontier) != root:
                    first = (consistent or 0) + 1
                    return result(
                        first,
                        f"the log's first {size} events are not the ones the signed checkpoint "
                        f"of {size} covers: an event from {first} to {size} was changed "
                        "(and the chain re-hashed after it).",
                    )
                consistent = size
            expected += 1
    if signed:
        size = signed[-1][0]
        return result(
            expected,
            f"the log ends at event {expected - 1}, but a signed checkpoint covers {size} events: "
            f"events {expected} to {size} were cut off its end.",
        )
    return result()


def _checkpoints() -> tuple[list[tuple[int, bytes]], tuple[int, str] | None]:
    """(size, root) of every stored checkpoint, oldest first, and the first whose signature is
    not by a trusted key, if any (as (size, problem))."""
    trusted = trusted_keys()
    found: list[tuple[int, bytes]] = []
    for size, root, note in Checkpoint.objects.order_by("size").values_list(
        "size", "root_hash", "note"
    ):
        if not any(_signed_by(note, key, size, bytes(root)) for key in trusted):
            return found, (
                size,
                f"the checkpoint of {size} events is not signed by a key the trail trusts "
                "(forged, or altered).",
            )
        found.append((size, bytes(root)))
    return found, None


def _signed_by(note: str, key: str, size: int, root: bytes) -> bool:
    try:
        parsed = signing.verify(note, key)
    except ValueError:
        return False
    return parsed.size == size and parsed.root == root


def trusted_keys() -> list[str]:
    """The signing key now, and every earlier one the (verified) trail recorded rotating from."""
    keys = [signing.signer().vkey]
    for payload in AuditEvent.objects.filter(event_type=EventType.SIGNING_KEY_ROTATED).values_list(
        "payload", flat=True
    ):
        previous = payload.get("previous_key") if isinstance(payload, dict) else None
        if previous and previous not in keys:
            keys.append(previous)
    return keys


def _stream(queryset: QuerySet[Any, Any], chunk_size: int) -> Generator[Sequence[Any]]:
    """The rows of `queryset` as tuples, from a server-side cursor, in constant memory.

    On PostgreSQL a second thread fetches the next chunk while this one hashes the current
    one, so the database and Python work at the same time (about 15-20% faster). Its rows need
    no conversion there; other databases go through the ORM's iterator, which converts them.
    """
    if connection.vendor != "postgresql":
        yield from queryset.iterator(chunk_size=chunk_size)
        return
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        yield from _read_ahead(cursor, chunk_size)


def _read_ahead(cursor: Any, chunk_size: int) -> Iterator[Sequence[Any]]:
    chunks: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def fetch() -> None:
        try:
            while not stop.is_set():
                rows = cursor.fetchmany(chunk_size)
                chunks.put(rows)
                if not rows:
                    return
        except BaseException as exc:  # handed over, re-raised in the consuming thread
            chunks.put(exc)

    fetcher = threading.Thread(target=fetch, name="audit-verify-read-ahead", daemon=True)
    fetcher.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield from item
    finally:
        # Stopping early (a break was found): let the fetcher finish the fetch it is in, so
        # the cursor is idle before it is closed.
        stop.set()
        while fetcher.is_alive():
            with contextlib.suppress(queue.Empty):
                chunks.get(timeout=0.1)
        fetcher.join()
