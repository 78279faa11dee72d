"""Exports of the audit trail (SPEC §7): the evidence bundle and the CSV view.

An **evidence bundle** is JSON Lines (format `oversight-evidence/1`, docs/compliance.md):

- a header: `{"type": "header", "format", "filter", "generated_at", "origin", "public_key"}`;
- one line per event: `{"type": "event", "sequence", ...}` with every canonical field as
  `audit.chain` hashes it (`occurred_at` in its canonical text, `payload` in its canonical
  JSON), `prev_hash`, `hash`, and `proof`: the RFC 6962 inclusion proof of the event's leaf
  (`{"leaf_index", "tree_size", "hashes": [base64, ...]}`) in the tree of the covering
  checkpoint;
- a trailer: `{"type": "trailer", "count", "checkpoint" (the signed note), "tree_size",
  "consistency": [{"from_size", "hashes"}, ...]}`: a consistency proof from every earlier
  stored checkpoint to the covering one, so whoever kept any older checkpoint can check that
  the log only grew since.

`tools/verify_evidence.py` checks a bundle with no access to the database or this code.

What an export covers is fixed before its first byte: the events matching the filter up to the
log's head at that moment (appends after it are not exported, so the count is known), a signed
checkpoint covering the last of them (`checkpoints.covering`, made on demand), and its
`export.made` event, recorded — committed — before streaming starts, with the format, filter,
count and checkpoint. An export that is started is on the record even if the download is cut
short; the event itself comes after the exported range, so it is never in its own bundle.

Streaming is in constant memory: rows come from a server-side cursor in chunks, and the proofs
of a chunk's events are built from one batch of subtree lookups (`InclusionProofs`); nothing
is kept from one chunk to the next but the O(log n) text the next leaf's proof shares.

Filters: a period (`since`/`until` on `occurred_at`, inclusive), an agent (events it did, and
events about it: actor or subject), a person (events they did: actor), an event type, and a
risk: events whose payload carries that level at its top level as `risk_level`
(`request.created`, and `route.changed`: the route's level), `severity` (`guardrail.violation`)
or `risk` (older and synthetic events). Decisions, votes and expiries do not repeat their
request's risk, so the risk filter finds the requests' creation, not their whole history.
"""

from __future__ import annotations

import base64
import bisect
import csv
import datetime as dt
import io
import json
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Max, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from audit import checkpoints, merkle, signing
from audit.chain import CANONICAL_FIELDS, canonical_json, format_timestamp
from audit.events import ActorType, EventType
from audit.models import AuditEvent, Checkpoint, MerkleNode
from audit.selectors import EventFilters, filtered_events
from audit.services import Actor, record_event

FORMAT = "oversight-evidence/1"
JSONL, CSV = "jsonl", "csv"
FORMATS = (JSONL, CSV)
RISKS = ("low", "medium", "high", "critical")
# The payload keys the risk filter looks at (top level only), see the module's docstring.
RISK_KEYS = ("risk_level", "severity", "risk")
CSV_COLUMNS = (*CANONICAL_FIELDS, "prev_hash", "hash")

# Rows per fetch from the server-side cursor, and per batch of proof lookups.
CHUNK_SIZE = 2_000
# Bind parameters per lookup query (PostgreSQL allows 65 535 in one statement).
PARAMETERS_PER_QUERY = 10_000


class ExportError(ValueError):
    """A filter that cannot be applied: an unknown agent, person, event type or risk."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ExportFilter:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    agent: str = ""  # an agent's name
    person: str = ""  # a person's username
    event_type: str = ""
    risk: str = ""

    def as_json(self) -> dict[str, str | None]:
        """The filter as the bundle's header and the `export.made` event state it."""
        return {
            "since": format_timestamp(self.since) if self.since else None,
            "until": format_timestamp(self.until) if self.until else None,
            "agent": self.agent or None,
            "person": self.person or None,
            "event_type": self.event_type or None,
            "risk": self.risk or None,
        }


@dataclass(frozen=True)
class Export:
    """An export whose range, checkpoint and audit event are settled; `stream()` writes it."""

    format: str
    filters: ExportFilter
    up_to: int  # the log's head when it began: nothing after it is exported
    count: int
    checkpoint: Checkpoint | None  # covers every exported event (bundles only)
    event: AuditEvent  # its export.made record
    generated_at: dt.datetime

    @property
    def filename(self) -> str:
        stamp = self.generated_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"oversight-audit-{stamp}-to-{self.up_to}.{self.format}"

    def stream(self) -> Generator[bytes]:
        return jsonl_lines(self) if self.format == JSONL else csv_lines(self)


def start_export(*, format: str, filters: ExportFilter, actor: Actor | None, via: str) -> Export:
    """Settle what an export covers and record it (`export.made`), before anything is streamed.

    The events are those matching `filters` up to the log's head now; for a bundle, a signed
    checkpoint covering the last of them is found or made. The event states the format, the
    filter, the count, the head (`up_to_sequence`), the checkpoint's size and `via` (`page`,
    `command`). Raises ExportError for a filter naming nobody.
    """
    if format not in FORMATS:
        raise ExportError("format", f"Unknown export format {format!r}.")
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    up_to = head or 0
    events = matching_events(filters, up_to=up_to)
    count, highest = 0, 0
    if events is not None:
        totals = events.aggregate(count=Count("sequence"), highest=Max("sequence"))
        count, highest = totals["count"], totals["highest"] or 0
    checkpoint = None
    if format == JSONL:
        # With nothing to prove, the latest checkpoint (if any) still states the log's size.
        checkpoint = checkpoints.covering(highest) if highest else checkpoints.latest()
    with transaction.atomic():
        event = record_event(
            event_type=EventType.EXPORT_MADE,
            actor=actor,
            payload={
                "format": format,
                "filters": filters.as_json(),
                "rows": count,
                "up_to_sequence": up_to,
                "checkpoint": checkpoint.size if checkpoint else None,
                "via": via,
            },
        )
    return Export(format, filters, up_to, count, checkpoint, event, timezone.now())


def matching_events(filters: ExportFilter, *, up_to: int) -> QuerySet[AuditEvent] | None:
    """The events at or below sequence `up_to` that match `filters`, unordered; None when the
    period holds none. Raises ExportError for an unknown agent, person, type or risk."""
    if filters.event_type and filters.event_type not in EventType.values:
        raise ExportError("event_type", f"Unknown event type {filters.event_type!r}.")
    if filters.risk and filters.risk not in RISKS:
        raise ExportError("risk", f"Unknown risk {filters.risk!r}: one of {', '.join(RISKS)}.")
    # The period becomes a sequence range, as on the audit page (occurred_at only grows).
    events = filtered_events(
        EventFilters(event_type=filters.event_type, since=filters.since, until=filters.until)
    )
    if events is None:
        return None
    events = events.filter(sequence__lte=up_to)
    if filters.agent:
        events = events.filter(_agent_condition(filters.agent))
    if filters.person:
        events = events.filter(_person_condition(filters.person))
    if filters.risk:
        risk = Q()
        for key in RISK_KEYS:
            risk |= Q(**{f"payload__{key}": filters.risk})
        events = events.filter(risk)
    return events


def _agent_condition(name: str) -> Q:
    # The app registry, not an import: the audit app sits below the agents app.
    agent_model = apps.get_model("agents", "Agent")
    pk = agent_model.objects.filter(name=name).values_list("pk", flat=True).first()
    if pk is None:
        raise ExportError("agent", f"No agent is named {name!r}.")
    return Q(actor_type=ActorType.AGENT, actor_id=str(pk)) | Q(
        subject_type="agent", subject_id=str(pk)
    )


def _person_condition(username: str) -> Q:
    user_model = get_user_model()
    pk = user_model.objects.filter(username=username).values_list("pk", flat=True).first()
    if pk is None:
        raise ExportError("person", f"No person has the username {username!r}.")
    return Q(actor_type=ActorType.USER, actor_id=str(pk))


# --- streaming ------------------------------------------------------------------------------

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_decode = json.JSONDecoder().raw_decode

_EVENT_LINE = (
    '{"type":"event","sequence":%d,"occurred_at":"%s","event_type":%s,"actor_type":%s,'
    '"actor_id":%s,"actor_name":%s,"subject_type":%s,"subject_id":%s,"payload":%s,'
    '"prev_hash":"%s","hash":"%s","proof":{"leaf_index":%d,"tree_size":%d,"hashes":[%s]}}\n'
)


def _rows(export: Export) -> QuerySet[AuditEvent, tuple[Any, ...]] | None:
    """The exported events in sequence order, as tuples: the canonical fields (the payload as
    text: no per-row JSON conversion by the driver), `prev_hash`, `hash`."""
    events = matching_events(export.filters, up_to=export.up_to)
    if events is None or not export.count:
        return None
    return (
        events.order_by("sequence")
        .annotate(payload_text=Cast("payload", TextField()))
        .values_list(*CANONICAL_FIELDS[:-1], "payload_text", "prev_hash", "hash")
    )


def _chunks(queryset: QuerySet[Any, Any], size: int) -> Iterator[Sequence[Sequence[Any]]]:
    """The rows of `queryset` in lists of `size`, from a server-side cursor (PostgreSQL; the
    ORM's chunked iterator elsewhere), in constant memory. Run inside a transaction: outside
    one, PostgreSQL would materialise a held cursor."""
    if connection.vendor != "postgresql":
        batch: list[Sequence[Any]] = []
        for row in queryset.iterator(chunk_size=size):
            batch.append(row)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    # Raw rows, as audit.integrity reads them: these columns need no conversion on PostgreSQL.
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(size):
            yield rows


def jsonl_lines(export: Export) -> Generator[bytes]:
    """The evidence bundle, a chunk of lines at a time."""
    checkpoint = export.checkpoint
    key = signing.signer()
    header = {
        "type": "header",
        "format": FORMAT,
        "filter": export.filters.as_json(),
        "generated_at": format_timestamp(export.generated_at),
        "origin": checkpoint.origin if checkpoint else key.name,
        "public_key": checkpoint.public_key if checkpoint else key.vkey,
    }
    yield (json.dumps(header, ensure_ascii=True) + "\n").encode("ascii")
    count = 0
    rows = _rows(export)
    if rows is not None and checkpoint is not None:
        size = checkpoint.size
        proofs = InclusionProofs(size, lookup)
        with transaction.atomic():
            for chunk in _chunks(rows, CHUNK_SIZE):
                # The chunk's own hashes are leaves its proofs need (every event's neighbour,
                # in a whole-log export): they are not looked up again.
                leaves = {row[0] - 1: merkle.leaf_hash(bytes.fromhex(row[10])) for row in chunk}
                proofs.load(leaves)
                lines = []
                for row in chunk:
                    sequence = row[0]
                    payload, _ = _decode(row[8])
                    lines.append(
                        _EVENT_LINE
                        % (
                            sequence,
                            format_timestamp(row[1]),
                            _quote(row[2]),
                            _quote(row[3]),
                            _quote(row[4]),
                            _quote(row[5]),
                            _quote(row[6]),
                            _quote(row[7]),
                            canonical_json(payload),
                            row[9],
                            row[10],
                            sequence - 1,
                            size,
                            proofs.text(sequence - 1),
                        )
                    )
                count += len(chunk)
                yield "".join(lines).encode("ascii")
    # The trailer, itself in pieces: its consistency proofs grow with the number of checkpoints.
    note = _quote(checkpoint.note) if checkpoint else "null"
    size = checkpoint.size if checkpoint else 0
    trailer = f'{{"type":"trailer","count":{count},"checkpoint":{note},"tree_size":{size},'
    yield (trailer + '"consistency":[').encode("ascii")
    if checkpoint is not None:
        separator = ""
        for entries in consistency_proofs(checkpoint.size):
            text = ",".join(json.dumps(entry, separators=(",", ":")) for entry in entries)
            yield (separator + text).encode("ascii")
            separator = ","
    yield b"]}\n"


def csv_lines(export: Export) -> Generator[bytes]:
    """The CSV view: a header row, then one row per event (CSV_COLUMNS; the payload as its
    canonical JSON, times in the canonical format). No proofs: the bundle is the evidence.
    Values are written as recorded, with no spreadsheet-formula escaping, so that they still
    hash to `hash`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = _rows(export)
    if rows is not None:
        with transaction.atomic():
            for chunk in _chunks(rows, CHUNK_SIZE):
                yield _take(buffer)
                writer.writerows(
                    (
                        row[0],
                        format_timestamp(row[1]),
                        *row[2:8],
                        canonical_json(_decode(row[8])[0]),
                        row[9],
                        row[10],
                    )
                    for row in chunk
                )
    yield _take(buffer)


def _take(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode("utf-8")


def consistency_proofs(size: int, *, batch: int = 200) -> Iterator[list[dict[str, Any]]]:
    """`{"from_size", "hashes"}` from every stored checkpoint smaller than `size` to `size`,
    oldest first, `batch` checkpoints (one lookup) at a time."""
    sizes = Checkpoint.objects.filter(size__lt=size).order_by("size")
    last = 0
    while olds := list(sizes.filter(size__gt=last).values_list("size", flat=True)[:batch]):
        last = olds[-1]
        ranges = {old: merkle.consistency_ranges(old, size) for old in olds}
        found = lookup(
            part
            for spans in ranges.values()
            for start, end in spans
            for part in merkle.subtrees(start, end)
        )

        def known(
            parts: Iterable[tuple[int, int]], found: dict[tuple[int, int], bytes] = found
        ) -> dict[tuple[int, int], bytes]:
            return {part: found[part] for part in parts}

        yield [
            {
                "from_size": old,
                "hashes": [_b64(merkle.range_hash(start, end, known)) for start, end in spans],
            }
            for old, spans in ranges.items()
        ]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


# --- subtree lookups, batched ----------------------------------------------------------------


def lookup(parts: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """`audit.tree.lookup` for many subtrees at once: per level, one range condition where the
    wanted indices are dense (a chunk of consecutive leaves needs nearly every node below it)
    and an IN list where they are sparse, a few queries in all. Raises KeyError for a subtree
    not built (yet)."""
    by_level: dict[int, set[int]] = defaultdict(set)
    for level, index in parts:
        by_level[level].add(index)
    found: dict[tuple[int, int], bytes] = {}
    leaves = by_level.pop(0, None)
    if leaves:
        for condition in _conditions("sequence", {0: {index + 1 for index in leaves}}):
            for sequence, text in AuditEvent.objects.filter(condition).values_list(
                "sequence", "hash"
            ):
                found[(0, sequence - 1)] = merkle.leaf_hash(bytes.fromhex(text))
    for condition in _conditions("index", by_level):
        for level, index, digest in MerkleNode.objects.filter(condition).values_list(
            "level", "index", "hash"
        ):
            found[(level, index)] = bytes(digest)
    missing = [
        (level, index)
        for level, indices in ((0, leaves or set()), *by_level.items())
        for index in indices
        if (level, index) not in found
    ]
    if missing:
        raise KeyError(f"subtrees not built (yet): {sorted(missing)[:5]}")
    return found


def _conditions(field: str, by_level: Mapping[int, set[int]]) -> Iterator[Q]:
    """OR-ed conditions selecting `by_level`'s indices (for `field`; `level` too unless it is
    the events' `sequence`), each with at most PARAMETERS_PER_QUERY parameters."""
    condition, parameters = Q(), 0
    for level, wanted in by_level.items():
        indices = sorted(wanted)
        for start in range(0, len(indices), PARAMETERS_PER_QUERY):
            some = indices[start : start + PARAMETERS_PER_QUERY]
            if some[-1] - some[0] < 2 * len(some):
                part, cost = Q(**{f"{field}__gte": some[0], f"{field}__lte": some[-1]}), 2
            else:
                part, cost = Q(**{f"{field}__in": some}), len(some)
            if field != "sequence":
                part &= Q(level=level)
                cost += 1
            if parameters + cost > PARAMETERS_PER_QUERY and parameters:
                yield condition
                condition, parameters = Q(), 0
            condition |= part
            parameters += cost
    if parameters:
        yield condition


# --- inclusion proofs of many leaves (pure: the lookup is given) ----------------------------


class InclusionProofs:
    """RFC 6962 inclusion proofs (RFC 9162 §2.1.3.1) of many leaves of one tree, batch after
    batch, each as the JSON text of its base64 hashes (`"h1","h2",...`).

    The tree of `size` leaves is a row of perfect subtrees (`merkle.subtrees(0, size)`: one per
    bit of `size`). RFC 6962's recursion, unrolled, makes a leaf's proof: its siblings inside
    its perfect subtree, lowest level first (complete subtrees: `(level, (leaf >> level) ^ 1)`),
    then the hash of all the leaves right of that subtree (if any), then the perfect subtrees to
    its left, nearest first. Leaves near each other share most of their siblings, so a batch of
    them needs few subtrees: `load()` fetches them all in one lookup, and `text()` then answers
    from memory. The end of the proofs of a perfect subtree's leaves is computed once.

    (Keeping each level's text from one leaf to the next, and redoing only the levels below the
    highest bit in which two leaves differ, made the whole export 8% faster (4.22 against
    4.58 s for 200 000 events): too little to keep.)
    """

    def __init__(self, size: int, lookup: merkle.Lookup) -> None:
        if size < 1:
            raise ValueError("a proof needs a tree of at least one leaf")
        self.size = size
        self._lookup = lookup
        # (height, first leaf) of each perfect subtree, left to right.
        self._blocks = [(level, index << level) for level, index in merkle.subtrees(0, size)]
        self._starts = [start for _, start in self._blocks]
        self._tails: dict[int, str] = {}  # per perfect subtree: the text of its proofs' end
        self._known: dict[tuple[int, int], str] = {}  # quoted base64, for the loaded batch

    def _block_of(self, leaf: int) -> int:
        return bisect.bisect_right(self._starts, leaf) - 1

    def load(self, leaves: Mapping[int, bytes] | Iterable[int]) -> None:
        """Prepare the proofs of `leaves` (ascending; a mapping may give their leaf hashes,
        which are then not looked up)."""
        given = leaves if isinstance(leaves, Mapping) else {}
        needed: set[tuple[int, int]] = set()
        indices = sorted(leaves)
        position = 0
        while position < len(indices):
            block = self._block_of(indices[position])
            height, start = self._blocks[block]
            end = start + (1 << height)
            stop = bisect.bisect_left(indices, end, position)
            run = set(indices[position:stop])
            for level in range(height):
                needed.update((level, index ^ 1) for index in run)
                run = {index >> 1 for index in run}
            if block not in self._tails:
                self._tails[block] = self._tail(block)
            position = stop
        known = {(0, leaf): given[leaf] for level, leaf in needed if not level and leaf in given}
        known.update(self._lookup(part for part in needed if part not in known))
        self._known = {part: f'"{_b64(digest)}"' for part, digest in known.items()}

    def _tail(self, block: int) -> str:
        """The text that ends the proof of every leaf of perfect subtree `block`."""
        hashes = []
        if block + 1 < len(self._blocks):
            hashes.append(merkle.range_hash(self._starts[block + 1], self.size, self._lookup))
        lefts = [(height, start >> height) for height, start in self._blocks[:block]]
        found = self._lookup(lefts) if lefts else {}
        hashes.extend(found[part] for part in reversed(lefts))
        return ",".join(f'"{_b64(digest)}"' for digest in hashes)

    def text(self, leaf: int) -> str:
        """The proof of `leaf` (one of the leaves loaded last)."""
        if not 0 <= leaf < self.size:
            raise ValueError(f"leaf {leaf} is not in a tree of {self.size}")
        block = self._block_of(leaf)
        known = self._known
        parts = [known[(level, (leaf >> level) ^ 1)] for level in range(self._blocks[block][0])]
        if tail := self._tails[block]:
            parts.append(tail)
        return ",".join(parts)
