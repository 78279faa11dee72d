"""Verification finds every edited, deleted, inserted or reordered event, and names the first."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from audit.chain import compute_hash
from audit.events import EventType
from audit.integrity import verify_chain
from audit.models import AuditEvent
from audit.services import record_event
from tests.audit.db import execute, tampering
from tools.audit_fill import bulk_append

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain() -> list[AuditEvent]:
    """Ten intact events."""
    return [
        record_event(
            event_type=EventType.LOGIN_FAILED,
            subject=("user", str(number)),
            payload={"username": f"person{number}", "attempt": number},
        )
        for number in range(1, 11)
    ]


def run_command() -> str:
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def test_an_intact_chain_verifies(chain):
    result = verify_chain()
    assert result.intact
    assert (result.events_checked, result.head_sequence, result.head_hash) == (
        10,
        10,
        chain[-1].hash,
    )
    assert result.first_bad_sequence is None


def test_an_empty_chain_is_intact():
    result = verify_chain()
    assert result.intact
    assert result.events_checked == 0
    assert "no events" in run_command()


def test_the_command_prints_a_one_line_summary_on_an_intact_chain(chain):
    output = run_command()
    assert output.count("\n") == 1
    assert output.startswith(
        f"Audit chain intact: 10 events, no signed checkpoint yet, head sequence 10, "
        f"head hash {chain[-1].hash}, verified in "
    )
    assert "events/s)" in output


def test_an_edited_payload_is_found_at_its_sequence(chain):
    with tampering():
        execute("UPDATE audit_auditevent SET actor_name = 'someone else' WHERE sequence = 4")
    result = verify_chain()
    assert not result.intact
    assert result.first_bad_sequence == 4
    assert "does not match its hash" in result.problem
    assert result.events_checked == 3  # the ones before it are fine
    with pytest.raises(CommandError, match="BROKEN at sequence 4: its content") as caught:
        run_command()
    assert caught.value.returncode == 1


def test_an_edit_with_a_recomputed_hash_is_found_at_the_next_event(chain):
    # The forger knows the algorithm and fixes the edited row's own hash; the next row's
    # prev_hash still points at the original.
    forged = AuditEvent.objects.get(sequence=6)
    forged.actor_name = "innocent"
    forged_hash = compute_hash(forged.prev_hash, forged.__dict__)
    with tampering():
        AuditEvent.objects.filter(sequence=6).update(actor_name="innocent", hash=forged_hash)
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 7)
    assert "prev_hash is not the hash of event 6" in result.problem


@pytest.mark.parametrize(
    "change",
    [
        {"occurred_at": F("occurred_at") + dt.timedelta(microseconds=1)},
        {"event_type": "login.succeeded"},
        {"actor_id": "7"},
        {"actor_type": "user"},
        {"subject_id": "999"},
        {"payload": {"username": "person5", "attempt": 5, "extra": True}},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_edited_column_is_found(chain, change):
    with tampering():
        AuditEvent.objects.filter(sequence=5).update(**change)
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 5)


def test_a_deleted_event_is_found_at_its_sequence(chain):
    with tampering():
        execute("DELETE FROM audit_auditevent WHERE sequence = 3")
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 3)
    assert result.problem == "event 3 is missing (the next event is 4)."
    with pytest.raises(CommandError, match="BROKEN at sequence 3: event 3 is missing"):
        run_command()


def test_deleting_the_first_events_is_found_at_sequence_one(chain):
    with tampering():
        execute("DELETE FROM audit_auditevent WHERE sequence <= 2")
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 1)
    assert result.problem == "events 1 to 2 are missing (the next event is 3)."


def test_a_deleted_and_renumbered_event_is_found(chain):
    # Hiding the gap by moving every later event down one.
    with tampering():
        execute(
            "DELETE FROM audit_auditevent WHERE sequence = 5",
            # (Through a range that is free, so the primary key never sees a duplicate.)
            "UPDATE audit_auditevent SET sequence = sequence + 999 WHERE sequence > 5",
            "UPDATE audit_auditevent SET sequence = sequence - 1000 WHERE sequence > 999",
        )
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 5)
    assert "prev_hash is not the hash of event 4" in result.problem


def test_two_events_with_swapped_contents_are_found_at_the_first(chain):
    first, second = AuditEvent.objects.get(sequence=3), AuditEvent.objects.get(sequence=8)
    with tampering():
        for target, source in ((first, second), (second, first)):
            AuditEvent.objects.filter(sequence=target.sequence).update(
                payload=source.payload, subject_id=source.subject_id, hash=source.hash
            )
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 3)


def test_two_events_with_swapped_sequence_numbers_are_found_at_the_first(chain):
    with tampering():
        execute(
            "UPDATE audit_auditevent SET sequence = 1000 WHERE sequence = 2",
            "UPDATE audit_auditevent SET sequence = 2 WHERE sequence = 9",
            "UPDATE audit_auditevent SET sequence = 9 WHERE sequence = 1000",
        )
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 2)
    assert "prev_hash is not the hash of event 1" in result.problem


def test_an_inserted_event_is_found(chain):
    # A forged event slipped in as number 5, correctly chained to event 4 and with a correct
    # hash of its own; the events after it are moved up one to make room.
    fourth = AuditEvent.objects.get(sequence=4)
    forged = {
        "sequence": 5,
        "occurred_at": fourth.occurred_at,
        "event_type": "login.succeeded",
        "actor_type": "system",
        "actor_id": "",
        "actor_name": "",
        "subject_type": "user",
        "subject_id": "1",
        "payload": {},
    }
    with tampering():
        execute(
            "UPDATE audit_auditevent SET sequence = sequence + 1000 WHERE sequence >= 5",
            "UPDATE audit_auditevent SET sequence = sequence - 999 WHERE sequence >= 1000",
        )
        AuditEvent.objects.create(
            **forged, prev_hash=fourth.hash, hash=compute_hash(fourth.hash, forged)
        )
    result = verify_chain()
    # The forgery itself checks out; the original fifth event, now sixth, does not.
    assert (result.intact, result.first_bad_sequence) == (False, 6)
    assert "prev_hash is not the hash of event 5" in result.problem


def test_an_event_appended_without_the_chain_is_found(chain):
    AuditEvent.objects.create(
        sequence=11,
        occurred_at=chain[-1].occurred_at,
        event_type="login.failed",
        actor_type="system",
        payload={},
        prev_hash=chain[-1].hash,
        hash="f" * 64,
    )
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 11)


def test_time_going_backwards_is_found(chain):
    # A forger can rechain from an edited event onwards, but not past the head's successors;
    # here the whole chain is rebuilt with event 7 dated before event 6.
    events = list(AuditEvent.objects.order_by("sequence").values())
    events[6]["occurred_at"] = events[5]["occurred_at"].replace(year=2000)
    prev = events[0]["prev_hash"]
    for event in events:
        event["prev_hash"] = prev
        event["hash"] = prev = compute_hash(prev, event)
    with tampering():
        execute("DELETE FROM audit_auditevent")
        AuditEvent.objects.bulk_create(AuditEvent(**event) for event in events)
    result = verify_chain()
    assert (result.intact, result.first_bad_sequence) == (False, 7)
    assert "earlier than the previous" in result.problem


def test_verification_streams_in_chunks_across_many_events():
    bulk_append(2_345)
    record_event(event_type=EventType.LOGIN_FAILED)
    result = verify_chain(chunk_size=100)
    assert result.intact
    assert result.events_checked == result.head_sequence == 2_346


def test_a_break_deep_in_a_long_chain_is_found_and_the_reader_stops_cleanly():
    bulk_append(3_000)
    with tampering():
        execute("UPDATE audit_auditevent SET actor_name = 'x' WHERE sequence = 1234")
    result = verify_chain(chunk_size=100)
    assert (result.intact, result.first_bad_sequence, result.events_checked) == (False, 1234, 1233)
    # The connection is usable afterwards (the read-ahead thread let go of the cursor).
    assert AuditEvent.objects.count() == 3_000
