"""The app's database role in production (SPEC §9.4): the trail is protected from the app
itself, not only from its good behaviour.

Migrations run as the role that owns the tables. Web, worker and beat connect as another role,
named by OVERSIGHT_DB_APP_ROLE, which after every `migrate` (this module's post_migrate hook)
may read and write the app's tables but, of the audit table, only read it: it appends through
`audit_append`, which runs as the owner (SECURITY DEFINER, migration 0004). Not being the owner,
it cannot UPDATE, DELETE or TRUNCATE events, nor ALTER the table to disable or drop the triggers
that refuse those. (No INSERT either: every append goes through the function, which chains it.)
docker-compose.yml creates both roles; docs/architecture.md says how elsewhere.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

AUDIT_TABLE = "audit_auditevent"
CHECKPOINT_TABLE = "audit_checkpoint"
APPEND_FUNCTION = (
    "audit_append(varchar, varchar, varchar, varchar, varchar, varchar, text, text, text, text)"
)


def grant_app_role(connection: BaseDatabaseWrapper, role: str) -> None:
    """Give `role` what the app needs and no more, on every table that exists now. Idempotent;
    run as the tables' owner."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        # Anything that would let the role act as the owner, or plant code (an operator, a
        # function) in the schema the owner's `audit_append` runs in, defeats the point.
        cursor.execute(
            "SELECT r.rolsuper OR r.rolcreaterole OR r.rolbypassrls, "
            "pg_has_role(r.oid, c.relowner, 'MEMBER'), current_schema() "
            "FROM pg_roles AS r, pg_class AS c "
            "WHERE r.rolname = %s AND c.oid = to_regclass(%s)",
            [role, AUDIT_TABLE],
        )
        row = cursor.fetchone()
        if row is None:
            raise ImproperlyConfigured(
                f"OVERSIGHT_DB_APP_ROLE names {role!r}, which is not a role of this database "
                "server (or the audit table is missing): create it first."
            )
        powerful, owner, schema = row
        if powerful or owner:
            raise ImproperlyConfigured(
                f"OVERSIGHT_DB_APP_ROLE {role!r} is a superuser, may create roles or bypass row "
                "security, or is (a member of) the audit table's owner: the app must run as a "
                "role that can do none of these."
            )
        who, where = quote(role), quote(schema)
        for statement in (
            f"REVOKE CREATE ON SCHEMA {where} FROM PUBLIC",
            f"REVOKE CREATE ON SCHEMA {where} FROM {who}",
            f"GRANT USAGE ON SCHEMA {where} TO {who}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {where} TO {who}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {where} TO {who}",
            f"REVOKE ALL ON {quote(AUDIT_TABLE)} FROM {who}",
            f"GRANT SELECT ON {quote(AUDIT_TABLE)} TO {who}",
            # Checkpoints are made by the app (beat) and never changed.
            f"REVOKE ALL ON {quote(CHECKPOINT_TABLE)} FROM {who}",
            f"GRANT SELECT, INSERT ON {quote(CHECKPOINT_TABLE)} TO {who}",
            # Which migrations ran is the owner's to say: a later protection must not be
            # marked applied by the app.
            f"REVOKE ALL ON django_migrations FROM {who}",
            f"GRANT SELECT ON django_migrations TO {who}",
            f"GRANT EXECUTE ON FUNCTION {APPEND_FUNCTION} TO {who}",
        ):
            cursor.execute(statement)
        cursor.execute("SELECT has_schema_privilege(%s, %s, 'CREATE')", [role, schema])
        if cursor.fetchone()[0]:
            raise ImproperlyConfigured(
                f"{role!r} may still create objects in schema {schema!r} (through a role it "
                "belongs to?): revoke that, then migrate again."
            )


def after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate (sent for the audit app, once per `migrate`): grant the app role."""
    role = settings.OVERSIGHT_DB_APP_ROLE
    connection = connections[using]
    if role and connection.vendor == "postgresql":
        grant_app_role(connection, role)
