"""Create the four role groups (SPEC §4) so a fresh database has them."""

from __future__ import annotations

from django.db import migrations

ROLES = ("approver", "manager", "compliance", "admin")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for role in ROLES:
        Group.objects.get_or_create(name=role)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
