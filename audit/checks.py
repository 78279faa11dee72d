"""System checks for what the audit trail relies on: the append lock, the checkpoints' key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.db import connections


def register() -> None:
    # Not tagged `database`: it reads settings only, so it runs with every `check`.
    checks.register(check_append_lock)
    checks.register(check_signing_key, deploy=True)


def check_signing_key(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """`check --deploy`: a key generated into a file under var/ is fine for development; in
    production it belongs in the environment (a secret store), not on a volume (SPEC §7)."""
    if settings.OVERSIGHT_AUDIT_SIGNING_KEY.strip():
        return []
    return [
        checks.Warning(
            "OVERSIGHT_AUDIT_SIGNING_KEY is not set: the audit checkpoints are signed with a key "
            f"generated into {settings.OVERSIGHT_AUDIT_SIGNING_KEY_FILE}.",
            hint="Set it to the base64 of a 32-byte Ed25519 seed kept in your secret store "
            "(docs/compliance.md: rotating the signing key).",
            id="audit.W001",
        )
    ]


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
