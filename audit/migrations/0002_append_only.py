"""Make audit_auditevent append-only in the database itself (SPEC §7, §9.4).

PostgreSQL: one trigger function refuses UPDATE and DELETE (row trigger) and TRUNCATE
(statement trigger). Both triggers are ENABLE ALWAYS, so `SET session_replication_role =
replica` does not switch them off; only the table's owner or a superuser altering the table
can. SQLite: BEFORE UPDATE / BEFORE DELETE triggers that abort. Both raise an integrity error
(SQLSTATE 23001 restrict_violation on PostgreSQL, SQLITE_CONSTRAINT on SQLite).

The SQL is spelled out here rather than imported, so this migration keeps meaning what it
meant when it ran.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

MESSAGE = "audit events are append-only"

POSTGRESQL_FORWARD = [
    f"""
    CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_event_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_auditevent
        FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change()
    """,
    """
    CREATE TRIGGER audit_event_no_truncate
        BEFORE TRUNCATE ON audit_auditevent
        FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change()
    """,
    "ALTER TABLE audit_auditevent ENABLE ALWAYS TRIGGER audit_event_no_update_delete",
    "ALTER TABLE audit_auditevent ENABLE ALWAYS TRIGGER audit_event_no_truncate",
]
POSTGRESQL_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent",
    "DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_auditevent",
    "DROP FUNCTION IF EXISTS audit_event_refuse_change()",
]

SQLITE_FORWARD = [
    f"""
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_auditevent
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE on audit_auditevent refused'); END
    """,
    f"""
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE on audit_auditevent refused'); END
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_event_no_update",
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
]

STATEMENTS = {
    "postgresql": (POSTGRESQL_FORWARD, POSTGRESQL_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


def _run(schema_editor: BaseDatabaseSchemaEditor, index: int) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise RuntimeError(f"No append-only triggers for {vendor}; the audit trail needs them.")
    for statement in STATEMENTS[vendor][index]:
        schema_editor.execute(statement, params=None)  # no placeholders: `%` is literal SQL


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _run(schema_editor, 0)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    # No way back (SPEC §9.4): unapplying this would make the trail editable. The BACKWARD
    # statements stay for the test suite, which lifts the triggers to empty its database.
    operations = [migrations.RunPython(forward, elidable=False)]
