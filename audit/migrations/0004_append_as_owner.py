"""PostgreSQL: `audit_append` runs as the audit table's owner (SECURITY DEFINER), so the app
can run as a role that may read the trail and append to it only through this function, and may
not change, empty or unprotect it (SPEC §9.4; `audit.roles` grants the app role its rights).

The function's search_path is fixed: pg_catalog, the schema it was created in, pg_temp last.
Without that, a caller could shadow `audit_auditevent` with a temporary table of its own and
have the owner's function write there. (An exact-match operator planted in the schema would
still win over pg_catalog's: `audit.roles` makes sure the app role cannot create anything
there.) Only the owner, and the roles granted it, may execute it.
"""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

SIGNATURE = (
    "audit_append(varchar, varchar, varchar, varchar, varchar, varchar, text, text, text, text)"
)


def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        (schema,) = cursor.fetchone()
    quoted = schema_editor.quote_name(schema)
    schema_editor.execute(
        f"ALTER FUNCTION {SIGNATURE} SECURITY DEFINER "
        f"SET search_path = pg_catalog, {quoted}, pg_temp",
        params=None,
    )
    schema_editor.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC", params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_append_function")]

    operations = [migrations.RunPython(forward, elidable=False)]
