"""System checks for what the audit trail's append lock relies on."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.db import connections


def register() -> None:
    # Not tagged `database`: it reads settings only, so it runs with every `check`.
    checks.register(check_append_lock)


def check_append_lock(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """On SQLite, appends are serialised only if transactions begin IMMEDIATE (see services)."""
    errors: list[checks.CheckMessage] = []
    for connection in connections.all():
        if connection.vendor == "sqlite" and (
            connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE"
        ):
            errors.append(
                checks.Error(
                    "SQLite must open transactions with BEGIN IMMEDIATE for the audit chain.",
                    hint='Set DATABASES[...]["OPTIONS"]["transaction_mode"] = "IMMEDIATE".',
                    id="audit.E001",
                )
            )
    return errors
