"""The canonical form: one definition, equal to the documented rules and to the README's script."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import (
    CANONICAL_FIELDS,
    GENESIS_HASH,
    canonical_event_bytes,
    compute_hash,
    format_timestamp,
    normalize_payload,
)
from audit.chain import (
    canonical_json as canonical_json_text,
)
from audit.events import EventType
from audit.models import AuditEvent
from audit.services import record_event

README = Path(__file__).resolve().parents[2] / "audit" / "README.md"


def readme_script() -> dict[str, object]:
    """Run the README's stand-alone snippet and return what it defines."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (script,) = [block for block in blocks if block.startswith("# recompute_hash.py")]
    namespace: dict[str, object] = {}
    exec(compile(script, "audit/README.md", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def documented_hash(prev_hash: str, event: dict[str, object]) -> str:
    """The rules of audit/README.md, spelled out with the standard library only."""
    canonical = json.dumps(
        {name: event[name] for name in CANONICAL_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256((prev_hash + canonical).encode("ascii")).hexdigest()


def exported_row(event: AuditEvent) -> dict[str, object]:
    """An event as a JSON Lines export carries it (occurred_at in the canonical format)."""
    row = {field.attname: getattr(event, field.attname) for field in AuditEvent._meta.fields}
    row["occurred_at"] = format_timestamp(event.occurred_at)
    return json.loads(json.dumps(row))


def test_the_readme_example_hash_is_what_the_code_computes():
    event = {
        "sequence": 42,
        "occurred_at": dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
        "event_type": "api_key.revoked",
        "actor_type": "user",
        "actor_id": "3",
        "actor_name": "Erin Example",
        "subject_type": "api_key",
        "subject_id": "19",
        "payload": {"prefix": "k3y9", "agent_id": 7},
    }
    expected = "f5dda18a376477619a18c67d8c72bab35ae7eabcfebefadd46be5375c69b5cf1"
    assert compute_hash(GENESIS_HASH, event) == expected
    assert expected in README.read_text(encoding="utf-8")
    assert GENESIS_HASH == "0" * 64


@pytest.mark.django_db
def test_the_readme_script_recomputes_every_stored_hash(make_user, make_agent, tmp_path):
    person = make_user("erin")
    agent = make_agent("release-bot").agent
    record_event(
        event_type=EventType.REQUEST_CREATED,
        actor=agent,
        subject=("approval_request", "7"),
        payload={
            "action": "déployer → prod 😀",
            "quote": 'say "hi"\\ \n\t\x01\x7f/',
            "cost": Decimal("0.0125"),
            "ratio": 0.1,
            "tiny": 1.5e-07,
            "whole": 3.0,
            "nested": {"b": [1, None, True], "a": {"z": 1, "y": 2}},
            "when": dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=ZoneInfo("Europe/Paris")),
        },
    )
    record_event(event_type=EventType.LOGIN_FAILED, payload={"username": "ünïcode"})
    record_event(event_type=EventType.AGENT_STATUS_CHANGED, actor=person, subject=agent)
    script = readme_script()
    events = list(AuditEvent.objects.order_by("sequence"))
    assert len(events) >= 6  # the fixtures' own events (user, agent, key) come first

    for event in events:
        row = exported_row(event)
        assert script["recompute_hash"](row) == event.hash  # type: ignore[operator]
        assert documented_hash(event.prev_hash, row) == event.hash

    export = tmp_path / "audit.jsonl"
    export.write_text("".join(json.dumps(exported_row(e)) + "\n" for e in events))
    assert script["verify_export"](str(export)) == len(events)  # type: ignore[operator]

    # ...and it notices an edit.
    rows = [exported_row(e) for e in events]
    rows[2]["payload"] = {"edited": True}
    export.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(AssertionError, match="event 3: edited"):
        script["verify_export"](str(export))  # type: ignore[operator]


text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    sequence=st.integers(min_value=1, max_value=2**62),
    moment=st.datetimes(
        min_value=dt.datetime(1970, 1, 1),
        max_value=dt.datetime(9999, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    strings=st.lists(text, min_size=6, max_size=6),
    payload=st.dictionaries(text, json_values, max_size=5),
)
def test_the_fast_canonical_form_is_exactly_sorted_compact_ascii_json(
    sequence, moment, strings, payload
):
    payload = normalize_payload(payload)
    event = dict(
        zip(
            ("event_type", "actor_type", "actor_id", "actor_name", "subject_type", "subject_id"),
            strings,
            strict=True,
        ),
        sequence=sequence,
        occurred_at=moment,
        payload=payload,
    )
    plain = dict(event, occurred_at=format_timestamp(moment))
    expected = json.dumps(
        plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    assert canonical_event_bytes(event) == expected.encode("ascii")
    assert compute_hash(GENESIS_HASH, event) == documented_hash(GENESIS_HASH, plain)
    # What is stored reads back (json.loads, as from jsonb or SQLite) to the same bytes.
    assert canonical_json_text(json.loads(canonical_json_text(payload))) == canonical_json_text(
        payload
    )


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC), "2026-03-01T09:30:00.000000Z"),
        (dt.datetime(2026, 3, 1, 9, 30, 0, 7, tzinfo=dt.UTC), "2026-03-01T09:30:00.000007Z"),
        (
            dt.datetime(2026, 3, 1, 1, 0, tzinfo=ZoneInfo("America/New_York")),
            "2026-03-01T06:00:00.000000Z",
        ),
        (
            dt.datetime(2026, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2025-12-31T23:30:00.000000Z",
        ),
    ],
)
def test_times_are_utc_with_microseconds_and_z(moment, text):
    assert format_timestamp(moment) == text


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(dt.datetime(2026, 3, 1, 9, 30))


def test_payload_values_are_normalised_as_documented():
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert normalize_payload(
        {
            "float": 2.0,
            "negative_zero": -0.0,
            "big": 1e20,
            "fraction": 0.25,
            "decimal": Decimal("12.50"),
            "exp_decimal": Decimal("1E+2"),
            "uuid": ident,
            "when": dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC),
            "day": dt.date(2026, 3, 1),
            "kind": EventType.LOGIN_FAILED,
            "tuple": (1, "a"),
            "nested": {"list": [Decimal("1.5")]},
        }
    ) == {
        "float": 2,
        "negative_zero": 0,
        "big": 100000000000000000000,
        "fraction": 0.25,
        "decimal": "12.50",
        "exp_decimal": "100",
        "uuid": "12345678-1234-5678-1234-567812345678",
        "when": "2026-03-01T09:30:00.000000Z",
        "day": "2026-03-01",
        "kind": "login.failed",
        "tuple": [1, "a"],
        "nested": {"list": ["1.5"]},
    }
    assert type(normalize_payload({"kind": EventType.LOGIN_FAILED})["kind"]) is str
    assert normalize_payload(None) == {}


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"x": float("nan")}, ValueError, "NaN"),
        ({"x": [float("inf")]}, ValueError, "NaN and infinities"),
        ({"x": Decimal("NaN")}, ValueError, "NaN"),
        ({"x": dt.datetime(2026, 1, 1)}, ValueError, "naive"),
        ({"x": "a\x00b"}, ValueError, "NUL"),
        ({"x": "\ud800"}, ValueError, "not valid Unicode"),
        ({1: "x"}, TypeError, "keys must be strings"),
        ({"x": {1, 2}}, TypeError, "set is not allowed"),
        ({"x": b"bytes"}, TypeError, "bytes is not allowed"),
        ({"x": dt.timedelta(seconds=1)}, TypeError, "timedelta is not allowed"),
        (["not", "a", "dict"], TypeError, "must be a dict"),
    ],
)
def test_payloads_that_cannot_be_hashed_reproducibly_are_refused(payload, error, message):
    with pytest.raises(error, match=message):
        normalize_payload(payload)
