"""The one definition of the hash chain's canonical form, shared by the writer and the verifier.

    hash = SHA-256(prev_hash ‖ canonical event)

`prev_hash` is the previous event's hash as 64 lowercase hex ASCII characters (64 zeros for the
first event). The canonical event is the JSON object of the nine fields in CANONICAL_FIELDS,
keys sorted, no whitespace, ASCII only. audit/README.md states the rules byte for byte so that
an auditor can recompute every hash without this code; tests/audit/test_chain.py holds the
README's stand-alone snippet to this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

GENESIS_HASH = "0" * 64

# The fields covered by the hash, in the order the verifier selects them. The JSON form sorts
# its keys, so this order does not affect the bytes.
CANONICAL_FIELDS = (
    "sequence",
    "occurred_at",
    "event_type",
    "actor_type",
    "actor_id",
    "actor_name",
    "subject_type",
    "subject_id",
    "payload",
)


def _make_encoder() -> Callable[[Any], str]:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
    allow_nan=False)`, built once.

    allow_nan=False makes NaN and infinities an error instead of the non-JSON tokens `NaN` and
    `Infinity`; ensure_ascii=True makes the bytes independent of any encoding downstream.
    json.dumps builds its C encoder afresh on every call, which was half the cost of verifying
    an event (SPEC §10: a million events in under 10 s), so the same C encoder is built here
    once; without the C accelerator the pure-Python encoder gives the same text.
    """
    plain = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    make_c_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_c_encoder is None:
        return plain.encode
    c_encode = make_c_encoder(
        None,  # no circular-reference markers: payloads are normalised trees
        plain.default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    return encode


_encode = _make_encoder()


def format_timestamp(moment: dt.datetime) -> str:
    """UTC, microseconds always present, `Z` suffix: `2026-03-01T09:30:00.000000Z`."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError("Audit timestamps must be timezone-aware.")
    if offset:
        moment -= offset
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_json(value: Any) -> str:
    """The canonical JSON text of an already normalised value (see `normalize_payload`)."""
    return _encode(value)


# The canonical event is `canonical_json` of the nine fields; this template writes exactly those
# bytes (keys in sorted order) without building and sorting a dict per event, which is what
# makes verification fast enough. tests/audit/test_chain.py checks it against json.dumps.
_EVENT_TEMPLATE = (
    '{"actor_id":%s,"actor_name":%s,"actor_type":%s,"event_type":%s,"occurred_at":"%s",'
    '"payload":%s,"sequence":%s,"subject_id":%s,"subject_type":%s}'
)
_quote = json.encoder.encode_basestring_ascii


def canonical_event_bytes(event: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one event: its CANONICAL_FIELDS as sorted, compact, ASCII JSON.

    `event` maps each field name to its stored value: `sequence` an int, `occurred_at` an aware
    datetime, `payload` a normalised dict, the other fields strings.
    """
    return canonical_bytes(*[event[name] for name in CANONICAL_FIELDS])


def compute_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash (64 hex characters) followed by the canonical event."""
    return chain_hash(prev_hash, canonical_event_bytes(event))


def canonical_bytes(
    sequence: int,
    occurred_at: dt.datetime,
    event_type: str,
    actor_type: str,
    actor_id: str,
    actor_name: str,
    subject_type: str,
    subject_id: str,
    payload: dict[str, Any],
) -> bytes:
    """`canonical_event_bytes` with the fields passed in CANONICAL_FIELDS order (the verifier's
    rows), so that verifying an event builds no dict."""
    if type(sequence) is not int:
        raise TypeError(f"sequence must be an int, not {type(sequence).__name__}.")
    text = event_text(
        sequence, format_timestamp(occurred_at), event_type, actor_type, actor_id, actor_name,
        subject_type, subject_id, payload,
    )  # fmt: skip
    return text.encode("ascii")


def event_text(
    sequence: int | str,
    occurred_at: str,
    event_type: str,
    actor_type: str,
    actor_id: str,
    actor_name: str,
    subject_type: str,
    subject_id: str,
    payload: dict[str, Any],
) -> str:
    """The one filling of the template: both the canonical bytes and their parts come from it."""
    return _EVENT_TEMPLATE % (
        _quote(actor_id),
        _quote(actor_name),
        _quote(actor_type),
        _quote(event_type),
        occurred_at,
        _encode(payload),
        sequence,
        _quote(subject_id),
        _quote(subject_type),
    )


_AT, _SEQUENCE = "\x00occurred_at\x00", "\x00sequence\x00"


def canonical_parts(
    event_type: str,
    actor_type: str,
    actor_id: str,
    actor_name: str,
    subject_type: str,
    subject_id: str,
    payload: dict[str, Any],
) -> tuple[str, str, str]:
    """The canonical event's text around its two head-dependent fields, `(before, middle,
    after)`, so that the canonical text is `before + occurred_at + middle + sequence + after`.

    For PostgreSQL's `audit_append` (migration 0003), which fills in what only the holder of
    the append lock knows. Cut from the one template, with markers no quoted value can contain
    (`_quote` escapes NUL).
    """
    text = event_text(
        _SEQUENCE, _AT, event_type, actor_type, actor_id, actor_name, subject_type, subject_id,
        payload,
    )  # fmt: skip
    before, rest = text.split(_AT)
    middle, after = rest.split(_SEQUENCE)
    return before, middle, after


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def normalize_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the payload as plain JSON values that survive storage unchanged, or raise.

    What is stored and hashed is this normalised form, so reading the row back (PostgreSQL's
    jsonb or SQLite's text) gives values that re-encode to the same bytes:

    - dict keys must be strings; tuples become lists;
    - str subclasses (TextChoices members) become plain str, int subclasses plain int;
    - a float must be finite; one with an integral value becomes an int (`2.0` → `2`), because
      jsonb would hand `1e16` back as `10000000000000000`;
    - Decimal → its plain decimal string (`Decimal("12.50")` → `"12.50"`), finite only;
    - aware datetime → UTC string like `occurred_at`; date → `YYYY-MM-DD`; UUID → `str(uuid)`;
    - strings may not contain NUL (PostgreSQL refuses it in jsonb) or lone surrogates.

    Anything else (naive datetimes, sets, bytes, model instances, ...) raises TypeError or
    ValueError naming where it is, so a bad payload fails loudly at the call site.
    """
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise TypeError(f"The audit payload must be a dict, not {type(payload).__name__}.")
    return _normalize_dict(payload, "payload")


def _normalize_dict(value: Mapping[Any, Any], where: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: keys must be strings, not {type(key).__name__} {key!r}.")
        key = _normalize_str(key, where)
        result[key] = _normalize(item, f"{where}[{key!r}]")
    return result


def _normalize_str(value: str, where: str) -> str:
    value = str.__str__(value)
    if "\x00" in value:
        raise ValueError(f"{where}: strings may not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{where}: not valid Unicode ({exc.reason}).") from None
    return value


def _normalize(value: Any, where: str) -> Any:
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return _normalize_str(value, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not allowed (NaN and infinities).")
        return int(value) if value.is_integer() else value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{where}: {value!r} is not allowed (NaN and infinities).")
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{where}: a naive datetime is ambiguous; make it timezone-aware.")
        return format_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return _normalize_dict(value, where)
    if isinstance(value, list | tuple):
        return [_normalize(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not allowed in an audit payload.")
