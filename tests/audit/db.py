"""Tampering with the audit table the way only its owner or a superuser could.

During a test the table's append-only triggers are as the migration left them
(tests/conftest.py lifts them only for the reset that follows a transaction=True test).
`tampering()` switches them off, as `ALTER TABLE ... DISABLE TRIGGER USER` does on PostgreSQL,
and puts them back, so a test can edit, delete or reorder rows and check that verification
notices.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

_migration = importlib.import_module("audit.migrations.0002_append_only")


def execute(*statements: str) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


@contextmanager
def tampering() -> Iterator[None]:
    if connection.vendor == "postgresql":
        execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
    else:
        execute(*_migration.SQLITE_BACKWARD)
    try:
        yield
    finally:
        if connection.vendor == "postgresql":
            execute(
                "ALTER TABLE audit_auditevent ENABLE ALWAYS TRIGGER audit_event_no_update_delete",
                "ALTER TABLE audit_auditevent ENABLE ALWAYS TRIGGER audit_event_no_truncate",
            )
        else:
            execute(*_migration.SQLITE_FORWARD)


_checkpoints = importlib.import_module("audit.migrations.0006_checkpoints_append_only")


@contextmanager
def tampering_with_checkpoints() -> Iterator[None]:
    """`tampering`, for the checkpoints' table."""
    if connection.vendor == "postgresql":
        execute("ALTER TABLE audit_checkpoint DISABLE TRIGGER USER")
    else:
        execute(*_checkpoints.SQLITE_BACKWARD)
    try:
        yield
    finally:
        if connection.vendor == "postgresql":
            execute(
                "ALTER TABLE audit_checkpoint ENABLE ALWAYS TRIGGER "
                "audit_checkpoint_no_update_delete",
                "ALTER TABLE audit_checkpoint ENABLE ALWAYS TRIGGER audit_checkpoint_no_truncate",
            )
        else:
            execute(*_checkpoints.SQLITE_FORWARD)
