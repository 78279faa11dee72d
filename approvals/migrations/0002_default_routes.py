"""Seed the default escalation routes of SPEC §2 (admins may change them later)."""

from __future__ import annotations

from django.db import migrations

DEFAULTS = {
    "low": ["team_lead"],
    "medium": ["team_lead", "engineering_manager"],
    "high": ["engineering_manager", "director"],
    "critical": ["director", "vp_engineering"],
}


def seed_routes(apps, schema_editor):
    EscalationRoute = apps.get_model("approvals", "EscalationRoute")
    for risk_level, tiers in DEFAULTS.items():
        EscalationRoute.objects.get_or_create(risk_level=risk_level, defaults={"tiers": tiers})


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]

    operations = [migrations.RunPython(seed_routes, migrations.RunPython.noop)]
