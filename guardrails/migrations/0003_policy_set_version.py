"""The policy set's version as one counter row (changes raise it in commit order)."""

from __future__ import annotations

from django.db import migrations, models


def start(apps, schema_editor):
    PolicySetVersion = apps.get_model("guardrails", "PolicySetVersion")
    PolicySetVersion.objects.get_or_create(pk=1, defaults={"version": 1})


class Migration(migrations.Migration):
    dependencies = [
        ("guardrails", "0002_seed_policies"),
    ]

    operations = [
        migrations.CreateModel(
            name="PolicySetVersion",
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
        migrations.RunPython(start, migrations.RunPython.noop),
    ]
