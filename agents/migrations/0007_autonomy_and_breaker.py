"""Autonomy levels and the circuit breaker's count, on the agent (SPEC §6).

On SQLite, adding a NOT NULL column remakes the table, and the keyring's triggers (0006) go
with the old one: they are made again at the end.
"""

from __future__ import annotations

import importlib

import django.core.validators
from django.conf import settings
from django.db import migrations, models

_KEYRING = importlib.import_module("agents.migrations.0006_keyring_version")


def remake_triggers_on_sqlite(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "sqlite":
        return
    for statement in _KEYRING.SQLITE_REVERSE:
        schema_editor.execute(statement.replace("DROP TRIGGER", "DROP TRIGGER IF EXISTS"))
    for statement in _KEYRING.SQLITE:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0006_keyring_version"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="autonomy_by_category",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="agent",
            name="autonomy_changed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="autonomy_level",
            field=models.PositiveSmallIntegerField(
                blank=True, null=True, validators=[django.core.validators.MaxValueValidator(5)]
            ),
        ),
        migrations.AddField(
            model_name="agent",
            name="autonomy_restorable",
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="autonomy_trial_from",
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="autonomy_trial_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="breaker_opened_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="consecutive_failures",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name="agent",
            constraint=models.CheckConstraint(
                condition=models.Q(("autonomy_level__lte", 5)), name="agent_autonomy_level_known"
            ),
        ),
        migrations.RunPython(remake_triggers_on_sqlite, migrations.RunPython.noop),
    ]
