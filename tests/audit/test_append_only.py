"""The application cannot change or remove audit rows: the database refuses (SPEC §9.4)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from audit.events import EventType
from audit.models import AuditEvent
from audit.services import record_event

pytestmark = pytest.mark.django_db

needs_postgresql = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="TRUNCATE and replication roles are PostgreSQL's"
)


@pytest.fixture
def event() -> AuditEvent:
    record_event(event_type=EventType.LOGIN_FAILED, payload={"username": "mallory"})
    return record_event(event_type=EventType.LOGIN_FAILED, payload={"username": "eve"})


def refused(sql: str, params: tuple[int, ...] = ()) -> str:
    """Run `sql` in a savepoint and return the database's refusal message."""
    with (
        pytest.raises(IntegrityError) as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
    return str(caught.value)


def test_the_orm_cannot_update_or_delete_an_event(event):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(payload={"username": "nobody"})
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    event.payload = {"username": "nobody"}
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        event.save(update_fields=["payload"])
    assert AuditEvent.objects.get(pk=event.pk).payload == {"username": "eve"}


def test_raw_update_and_delete_are_refused(event):
    assert "UPDATE" in refused("UPDATE audit_auditevent SET actor_name = 'x'")
    assert "DELETE" in refused("DELETE FROM audit_auditevent WHERE sequence = %s", (event.pk,))
    assert "DELETE" in refused("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.count() == 2


@needs_postgresql
def test_truncate_is_refused(event):
    assert "TRUNCATE" in refused("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.count() == 2


@needs_postgresql
def test_the_replica_replication_role_does_not_switch_the_triggers_off(event):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL session_replication_role = replica")
        assert "UPDATE" in refused("UPDATE audit_auditevent SET actor_name = 'x'")
        assert "DELETE" in refused("DELETE FROM audit_auditevent")
        assert "TRUNCATE" in refused("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.get(pk=event.pk).actor_name == ""


@needs_postgresql
def test_the_triggers_are_enabled_always():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, tgenabled FROM pg_trigger "
            "WHERE tgrelid = 'audit_auditevent'::regclass AND NOT tgisinternal ORDER BY tgname"
        )
        assert cursor.fetchall() == [
            ("audit_event_no_truncate", "A"),
            ("audit_event_no_update_delete", "A"),
        ]


def test_appending_is_still_allowed(event):
    assert record_event(event_type=EventType.LOGIN_FAILED).sequence == event.sequence + 1
