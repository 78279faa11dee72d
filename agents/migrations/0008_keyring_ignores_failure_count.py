"""The circuit breaker's running count (`Agent.consecutive_failures`) changes with every failure
an agent reports; the check reads only whether the breaker is open (`breaker_opened_at`). So
the keyring's version (0006) no longer rises for the count alone: every process would otherwise
read all its keys again after each failure anywhere. Opening or closing the breaker still
raises it.

SQLite names the columns that count; a migration that adds a column to agents must make the
trigger again (a NOT NULL column remakes the table there anyway, see 0007).
"""

from __future__ import annotations

import importlib

from django.db import migrations

_KEYRING = importlib.import_module("agents.migrations.0006_keyring_version")
IGNORED = "consecutive_failures"

POSTGRESQL = [
    "DROP TRIGGER agents_agent_keyring_update ON agents_agent",
    f"""
    CREATE TRIGGER agents_agent_keyring_update AFTER UPDATE ON agents_agent
    FOR EACH ROW
    WHEN (to_jsonb(OLD) - '{IGNORED}' IS DISTINCT FROM to_jsonb(NEW) - '{IGNORED}')
    EXECUTE FUNCTION agents_raise_keyring_version()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER agents_agent_keyring_update ON agents_agent",
    """
    CREATE TRIGGER agents_agent_keyring_update AFTER UPDATE ON agents_agent
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION agents_raise_keyring_version()
    """,
]


def sqlite_trigger(apps) -> str:  # type: ignore[no-untyped-def]
    agent = apps.get_model("agents", "Agent")
    columns = ", ".join(
        field.column for field in agent._meta.concrete_fields if field.column != IGNORED
    )
    return (
        f"CREATE TRIGGER agents_agent_keyring_update AFTER UPDATE OF {columns} "
        f"ON agents_agent {_KEYRING._RAISE}"
    )


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = POSTGRESQL
    elif vendor == "sqlite":
        statements = ["DROP TRIGGER IF EXISTS agents_agent_keyring_update", sqlite_trigger(apps)]
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = POSTGRESQL_REVERSE
    elif vendor == "sqlite":
        statements = ["DROP TRIGGER IF EXISTS agents_agent_keyring_update", _KEYRING.SQLITE[0]]
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("agents", "0007_autonomy_and_breaker")]

    operations = [migrations.RunPython(forwards, backwards)]
