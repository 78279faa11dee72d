"""This process's copies of the API keys it authenticates, each with its agent.

The guardrails check is the call agents make before every action, and reading the key from
PostgreSQL was a third of its cost (the query and the connection's checkout and return;
`docs/performance.md`). So the check authenticates from a copy: a key read once is kept with
the keyring version it was read at (`KeyringVersion`, which a database trigger raises on every
change of an agent or a key), and the check's one Redis round trip compares that version with
the published one before it counts or answers anything (`guardrails.counters`). A copy read at
any other version is read again from the database, so a revoked key, a paused or disabled agent
or a new team is honoured by the very next check on every process, as before.

A change publishes the new version when its transaction commits (`KEYRING.changed()`), tried a
few times even while the process's Redis breaker is open: the services of `agents.services`
say so after each UPDATE, and a save or delete of an agent or a key through the ORM (a cascade,
the shell) by the receivers below. Should Redis never hear of a change (an UPDATE typed into
psql, the writer cut off from Redis, Redis back from a snapshot older than the change, a
database restored under running processes), each process still compares its copies with the
database's version at least every OVERSIGHT_KEYRING_RECHECK_SECONDS (1 s) and drops the others;
beat republishes the version every tick as well.

The other endpoints read the key from the database on every call (`authenticate_bearer`).
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import connection, models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from agents.models import Agent, ApiKey, KeyringVersion
from oversight.cache import VersionedRows


def keyring_version() -> int:
    row = KeyringVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return row or 0


def read_key(prefix: str) -> tuple[int, ApiKey | None]:
    """The key with this prefix and its agent, and the keyring's version, in one statement (so
    the row is at least as new as the version)."""
    sql, fields = _key_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        row = cursor.fetchone()
    version = int(row[0])
    if row[1] is None:
        return version, None
    values = []
    for value, field in zip(row[1:], fields, strict=True):
        column, converters = _converters(field)
        for convert in converters:
            value = convert(value, column, connection)
        values.append(value)
    split = len(ApiKey._meta.concrete_fields)
    api_key = ApiKey.from_db(connection.alias, [f.attname for f in fields[:split]], values[:split])
    api_key.agent = Agent.from_db(
        connection.alias, [f.attname for f in fields[split:]], values[split:]
    )
    return version, api_key


KEYRING: VersionedRows[str, ApiKey | None] = VersionedRows(
    "keyring", version=keyring_version, load=read_key
)


@receiver(post_save, sender=Agent)
@receiver(post_save, sender=ApiKey)
@receiver(post_delete, sender=Agent)
@receiver(post_delete, sender=ApiKey)
def _row_changed(**kwargs: object) -> None:
    KEYRING.changed()


def copy_of_key(prefix: str) -> tuple[int, ApiKey | None]:
    """The key as this process last read it, with the version it was read at; read from the
    database when there is no copy. Unverified: the caller compares the version with the
    published one before it relies on the copy (see `VersionedRows`)."""
    KEYRING.recheck(settings.OVERSIGHT_KEYRING_RECHECK_SECONDS)
    held = KEYRING.peek(prefix)
    if held is not None:
        return held
    return KEYRING.load(prefix)


@functools.cache
def _key_query() -> tuple[str, list[models.Field[Any, Any]]]:
    """`ApiKey.objects.select_related("agent").filter(prefix=prefix).first()` and the keyring's
    version, minus the ORM's work of compiling that query again on every API call (a third of
    the call's cost): the SQL is built once, on first use, from the models' own metadata, and
    rows become instances via `from_db`. A prefix no key has still gives the version (the
    outer join), with NULLs for the key."""
    quote = connection.ops.quote_name

    def column(model: type[models.Model], name: str) -> str:
        field = model._meta.get_field(name)
        assert isinstance(field, models.Field)
        assert field.column
        return f"{quote(model._meta.db_table)}.{quote(field.column)}"

    fields = [*ApiKey._meta.concrete_fields, *Agent._meta.concrete_fields]
    columns = ", ".join(column(field.model, field.name) for field in fields)
    version = quote(KeyringVersion._meta.db_table)
    # Only quoted identifiers from the models' metadata go in; the prefix is a parameter.
    sql = (
        f"SELECT COALESCE((SELECT {quote('version')} FROM {version} "  # noqa: S608
        f"WHERE {quote('id')} = 1), 0), {columns} "
        f"FROM (SELECT 1) AS one "
        f"LEFT JOIN {quote(ApiKey._meta.db_table)} ON {column(ApiKey, 'prefix')} = %s "
        f"LEFT JOIN {quote(Agent._meta.db_table)} "
        f"ON {column(Agent, 'id')} = {column(ApiKey, 'agent')}"
    )
    return sql, fields


@functools.cache
def _converters(field: models.Field[Any, Any]) -> tuple[Any, list[Any]]:
    """What the ORM applies to a column read from this database (e.g. SQLite's datetimes)."""
    column = field.get_col(field.model._meta.db_table)
    return column, [*connection.ops.get_db_converters(column), *field.get_db_converters(connection)]
