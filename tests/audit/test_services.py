"""record_event: what it writes, how it chains, and what it refuses."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.checks import Error
from django.db import transaction

from agents.models import ApiKey
from audit.chain import GENESIS_HASH, compute_hash
from audit.checks import check_append_lock
from audit.events import EventType
from audit.integrity import verify_chain
from audit.models import AuditEvent
from audit.services import record_event

pytestmark = pytest.mark.django_db


def test_the_first_event_starts_the_chain_at_one_from_the_genesis_hash():
    event = record_event(event_type=EventType.LOGIN_FAILED, payload={"username": "x"})
    assert event.sequence == 1
    assert event.prev_hash == GENESIS_HASH
    stored = AuditEvent.objects.get(sequence=1)
    assert stored.hash == event.hash == compute_hash(GENESIS_HASH, stored.__dict__)


def test_an_unknown_event_type_is_refused_before_anything_is_written():
    with pytest.raises(ValueError, match=r"Unknown audit event type 'login\.teleported'"):
        record_event(event_type="login.teleported")
    assert not AuditEvent.objects.exists()
    # Every declared type is accepted, the plain string as well as the member.
    assert record_event(event_type=str(EventType.LOGIN_FAILED)).sequence == 1


def test_each_event_links_to_the_one_before_and_time_never_goes_back():
    events = [record_event(event_type=EventType.LOGIN_FAILED) for _ in range(5)]
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
        assert after.occurred_at >= before.occurred_at
    assert verify_chain().intact


def test_a_person_an_agent_and_the_system_are_recorded_by_name_and_id(make_user, make_agent):
    person = make_user("erin")
    person.first_name, person.last_name = "Erin", "Example"
    agent = make_agent("release-bot").agent

    by_person = record_event(event_type=EventType.LOGIN_SUCCEEDED, actor=person)
    by_agent = record_event(event_type=EventType.REQUEST_CREATED, actor=agent)
    by_system = record_event(event_type=EventType.REQUEST_EXPIRED)
    # Not in the signature, but what request.user is before a login: the system too.
    by_nobody = record_event(event_type=EventType.LOGIN_FAILED, actor=AnonymousUser())  # type: ignore[arg-type]

    assert (by_person.actor_type, by_person.actor_id, by_person.actor_name) == (
        "user",
        str(person.pk),
        "Erin Example",
    )
    assert (by_agent.actor_type, by_agent.actor_id, by_agent.actor_name) == (
        "agent",
        str(agent.pk),
        "release-bot",
    )
    for event in (by_system, by_nobody):
        assert (event.actor_type, event.actor_id, event.actor_name) == ("system", "", "")


def test_subjects_are_a_snake_case_type_and_an_id(make_agent):
    agent = make_agent("release-bot").agent
    key = ApiKey.objects.get(agent=agent)
    assert (
        record_event(event_type=EventType.API_KEY_REVOKED, subject=key).subject_type,
        record_event(event_type=EventType.API_KEY_REVOKED, subject=key).subject_id,
    ) == ("api_key", str(key.pk))
    explicit = record_event(event_type=EventType.REQUEST_DECIDED, subject=("approval_request", "9"))
    assert (explicit.subject_type, explicit.subject_id) == ("approval_request", "9")
    none = record_event(event_type=EventType.EXPORT_MADE)
    assert (none.subject_type, none.subject_id) == ("", "")


def test_the_stored_payload_is_the_normalised_one_and_still_verifies():
    event = record_event(
        event_type=EventType.BUDGET_ALERT,
        payload={
            "spend": Decimal("100.10"),
            "ratio": 0.8,
            "threshold": 1.0,
            "big": 1e16,
            "tiny": 1e-05,
            "at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        },
    )
    expected = {
        "spend": "100.10",
        "ratio": 0.8,
        "threshold": 1,
        "big": 10**16,
        "tiny": 1e-05,
        "at": "2026-03-01T00:00:00.000000Z",
    }
    assert event.payload == expected
    assert AuditEvent.objects.get(sequence=event.sequence).payload == expected
    assert verify_chain().intact


def test_the_database_computes_the_same_hash_as_python_for_any_text(make_user):
    """On PostgreSQL `audit_append` hashes in SQL; on SQLite Python does. Both must produce the
    canonical bytes that verification recomputes: escapes, non-ASCII, nesting, the clock."""
    person = make_user("zoe")
    person.first_name, person.last_name = 'Zoë "Z" \\', "Ŵ✓ 𝄞"
    payload = {
        "text": 'line\nbreak\t"quoted" \\ é ✓ 𝄞 \u2028',
        "nested": {"b": [1, 2.5, None, True, {"z": "ü"}], "a": ""},
        "%s": "%(x)s {} $1 '",
    }
    events = [
        record_event(event_type=EventType.LOGIN_SUCCEEDED, actor=person, payload=payload)
        for _ in range(3)
    ]
    for event in events:
        stored = AuditEvent.objects.get(sequence=event.sequence)
        assert stored.hash == event.hash == compute_hash(stored.prev_hash, stored.__dict__)
        assert stored.occurred_at == event.occurred_at
    assert verify_chain().intact


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"event_type": "made.up"}, ValueError),
        ({"event_type": EventType.LOGIN_FAILED, "payload": {"x": float("nan")}}, ValueError),
        ({"event_type": EventType.LOGIN_FAILED, "subject": ("", "1")}, ValueError),
        ({"event_type": EventType.LOGIN_FAILED, "subject": "agent:1"}, TypeError),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(kwargs, error):
    with transaction.atomic():
        with pytest.raises(error):
            record_event(**kwargs)
        # Refused before the write: the surrounding transaction is still usable.
        record_event(event_type=EventType.LOGIN_FAILED)
    assert list(AuditEvent.objects.values_list("sequence", flat=True)) == [1]


def test_a_rolled_back_transaction_leaves_no_event():
    record_event(event_type=EventType.LOGIN_FAILED)
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(event_type=EventType.AGENT_CREATED)
        raise RuntimeError("the change failed after its event was recorded")
    assert list(AuditEvent.objects.values_list("event_type", flat=True)) == ["login.failed"]
    # The next event takes the free sequence number: no gap.
    assert record_event(event_type=EventType.USER_CREATED).sequence == 2
    assert verify_chain().intact


def test_a_sqlite_database_without_begin_immediate_fails_the_system_check(monkeypatch):
    assert check_append_lock() == []  # the project's own settings pass

    class FakeConnections:
        def all(self) -> list[SimpleNamespace]:
            options = {"transaction_mode": "DEFERRED"}
            return [SimpleNamespace(vendor="sqlite", settings_dict={"OPTIONS": options})]

    monkeypatch.setattr("audit.checks.connections", FakeConnections())
    errors = check_append_lock()
    assert [(type(e), e.id) for e in errors] == [(Error, "audit.E001")]
