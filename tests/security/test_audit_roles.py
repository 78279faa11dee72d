"""Issue 18, item 4: the trail is protected from the app itself (SPEC §9.4).

Before: the app connected as the audit table's owner, so it could disable or drop the triggers
that keep the trail append-only, and the trigger migration could be reversed.
"""

from __future__ import annotations

import importlib

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit import roles
from audit.events import EventType
from audit.integrity import verify_chain
from audit.models import AuditEvent
from audit.services import record_event

ROLE = "oversight_test_app"

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="database roles are PostgreSQL's"
)


@pytest.fixture
def as_app_role(db, settings):
    """This test's connection acting as a fresh app role that `migrate` granted its rights (all
    inside the test's transaction, which rolls the role back too)."""
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{ROLE}" NOLOGIN')
    settings.OVERSIGHT_DB_APP_ROLE = ROLE
    roles.after_migrate(using="default")  # what every `migrate` ends with
    with connection.cursor() as cursor:
        cursor.execute(f'SET ROLE "{ROLE}"')
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")


def _refused(sql: str) -> str:
    with pytest.raises(DatabaseError) as refused, transaction.atomic(), connection.cursor() as c:
        c.execute(sql)
    assert isinstance(refused.value.__cause__, psycopg.errors.InsufficientPrivilege), refused.value
    return str(refused.value)


def test_the_app_role_appends_and_reads_but_cannot_change_or_unprotect_the_trail(
    as_app_role, new_request, approvers
):
    # The app works as this role: a request, a vote, their events appended through the chain.
    from approvals import services

    request = new_request()
    services.approve_request(request_id=request.pk, reviewer=approvers["lead"])
    record_event(event_type=EventType.EXPORT_MADE, payload={"rows": 1})
    assert AuditEvent.objects.filter(subject_id=str(request.pk)).count() >= 2

    table = "audit_auditevent"
    _refused("UPDATE audit_auditevent SET payload = '{}'::jsonb")
    _refused("DELETE FROM audit_auditevent")
    _refused("TRUNCATE audit_auditevent")
    assert "must be owner" in _refused(
        f"ALTER TABLE {table} DISABLE TRIGGER audit_event_no_update_delete"
    )
    _refused(f"DROP TRIGGER audit_event_no_update_delete ON {table}")
    _refused(f"ALTER TABLE {table} OWNER TO {ROLE}")
    # Nor around the chain: appends go through audit_append only.
    _refused(
        "INSERT INTO audit_auditevent (sequence, occurred_at, event_type, actor_type, actor_id, "
        "actor_name, subject_type, subject_id, payload, prev_hash, hash) VALUES (999999, now(), "
        "'export.made', 'system', '', '', '', '', '{}'::jsonb, '', '')"
    )
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
    assert verify_chain().intact


def test_a_temporary_table_cannot_stand_in_for_the_trail_in_the_owners_function(as_app_role):
    """audit_append runs as the owner: its search_path is fixed, so a caller's temporary table
    of the same name is never the one it writes to."""
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        cursor.execute(
            f'GRANT TEMPORARY ON DATABASE "{connection.settings_dict["NAME"]}" TO "{ROLE}"'
        )
        cursor.execute(f'SET ROLE "{ROLE}"')
        cursor.execute("CREATE TEMP TABLE audit_auditevent (LIKE public.audit_auditevent)")
    before = AuditEvent.objects.count()  # reads the caller's search_path: the empty temp table
    assert before == 0
    record_event(event_type=EventType.EXPORT_MADE, payload={"rows": 2})
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM public.audit_auditevent WHERE payload->>'rows' = '2'")
        assert cursor.fetchone()[0] == 1


def test_granting_refuses_a_role_that_owns_the_table_or_is_a_superuser(db):
    from django.core.exceptions import ImproperlyConfigured

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        (owner,) = cursor.fetchone()
    with pytest.raises(ImproperlyConfigured, match="is a superuser"):
        roles.grant_app_role(connection, owner)
    with pytest.raises(ImproperlyConfigured, match="not a role"):
        roles.grant_app_role(connection, "no-such-role")


@pytest.mark.parametrize(
    "name", ["0002_append_only", "0003_append_function", "0004_append_as_owner"]
)
def test_the_trail_s_protections_cannot_be_migrated_away(name):
    migration = importlib.import_module(f"audit.migrations.{name}").Migration
    assert not any(operation.reversible for operation in migration.operations)
