"""The keyring's version (agents.models.KeyringVersion) and the triggers that raise it.

PostgreSQL: row triggers on agents and keys that raise the version when a row is deleted or
changes in anything but a key's last_used_at (compared as JSON, so a column added later counts
without touching the trigger). SQLite (the embedded demo) names the key's columns instead.
"""

from __future__ import annotations

from django.db import migrations, models

POSTGRESQL = [
    """
    CREATE FUNCTION agents_raise_keyring_version() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO agents_keyringversion (id, version) VALUES (1, 1)
        ON CONFLICT (id) DO UPDATE SET version = agents_keyringversion.version + 1;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER agents_agent_keyring_update AFTER UPDATE ON agents_agent
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW)
    EXECUTE FUNCTION agents_raise_keyring_version()
    """,
    """
    CREATE TRIGGER agents_agent_keyring_delete AFTER DELETE ON agents_agent
    FOR EACH ROW EXECUTE FUNCTION agents_raise_keyring_version()
    """,
    """
    CREATE TRIGGER agents_apikey_keyring_update AFTER UPDATE ON agents_apikey
    FOR EACH ROW
    WHEN (to_jsonb(OLD) - 'last_used_at' IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at')
    EXECUTE FUNCTION agents_raise_keyring_version()
    """,
    """
    CREATE TRIGGER agents_apikey_keyring_delete AFTER DELETE ON agents_apikey
    FOR EACH ROW EXECUTE FUNCTION agents_raise_keyring_version()
    """,
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER agents_agent_keyring_update ON agents_agent",
    "DROP TRIGGER agents_agent_keyring_delete ON agents_agent",
    "DROP TRIGGER agents_apikey_keyring_update ON agents_apikey",
    "DROP TRIGGER agents_apikey_keyring_delete ON agents_apikey",
    "DROP FUNCTION agents_raise_keyring_version()",
]

_RAISE = """
    BEGIN
        INSERT INTO agents_keyringversion (id, version) VALUES (1, 1)
        ON CONFLICT (id) DO UPDATE SET version = agents_keyringversion.version + 1;
    END
"""
_KEY_COLUMNS = (
    "agent_id, prefix, secret_hash, label, created_at, created_by_id, revoked_at, revoked_by_id"
)
SQLITE = [
    f"CREATE TRIGGER agents_agent_keyring_update AFTER UPDATE ON agents_agent {_RAISE}",
    f"CREATE TRIGGER agents_agent_keyring_delete AFTER DELETE ON agents_agent {_RAISE}",
    f"CREATE TRIGGER agents_apikey_keyring_update AFTER UPDATE OF {_KEY_COLUMNS} "
    f"ON agents_apikey {_RAISE}",
    f"CREATE TRIGGER agents_apikey_keyring_delete AFTER DELETE ON agents_apikey {_RAISE}",
]
SQLITE_REVERSE = [
    "DROP TRIGGER agents_agent_keyring_update",
    "DROP TRIGGER agents_agent_keyring_delete",
    "DROP TRIGGER agents_apikey_keyring_update",
    "DROP TRIGGER agents_apikey_keyring_delete",
]


def _run(statements: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("agents", "0005_allow_self_approval")]

    operations = [
        migrations.CreateModel(
            name="KeyringVersion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("version", models.PositiveBigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        ),
    ]
