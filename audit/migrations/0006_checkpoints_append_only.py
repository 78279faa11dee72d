"""Make audit_checkpoint append-only, as the events are (SPEC §7: checkpoints are stored in their
own append-only table): the same triggers as 0002, for this table. Spelled out, so this
migration keeps meaning what it meant when it ran."""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

MESSAGE = "audit checkpoints are append-only"

POSTGRESQL_FORWARD = [
    f"""
    CREATE OR REPLACE FUNCTION audit_checkpoint_refuse_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_checkpoint_no_update_delete
        BEFORE UPDATE OR DELETE ON audit_checkpoint
        FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_refuse_change()
    """,
    """
    CREATE TRIGGER audit_checkpoint_no_truncate
        BEFORE TRUNCATE ON audit_checkpoint
        FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_refuse_change()
    """,
    "ALTER TABLE audit_checkpoint ENABLE ALWAYS TRIGGER audit_checkpoint_no_update_delete",
    "ALTER TABLE audit_checkpoint ENABLE ALWAYS TRIGGER audit_checkpoint_no_truncate",
]
POSTGRESQL_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON audit_checkpoint",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_update_delete ON audit_checkpoint",
    "DROP FUNCTION IF EXISTS audit_checkpoint_refuse_change()",
]
SQLITE_FORWARD = [
    f"""
    CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: UPDATE on audit_checkpoint refused'); END
    """,
    f"""
    CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}: DELETE on audit_checkpoint refused'); END
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_update",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete",
]

STATEMENTS = {
    "postgresql": (POSTGRESQL_FORWARD, POSTGRESQL_BACKWARD),
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
}


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise RuntimeError(f"No append-only triggers for {vendor}; checkpoints need them.")
    for statement in STATEMENTS[vendor][0]:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_transparency_log")]

    operations = [migrations.RunPython(forward, elidable=False)]
