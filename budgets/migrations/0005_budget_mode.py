"""Budgets get a mode (SPEC §5: enforce, alert-only, ask) in place of the enforce flag, and a
window keeps what approvals raised its cap by."""

from __future__ import annotations

from decimal import Decimal

from django.db import migrations, models


def to_mode(apps, schema_editor):
    Budget = apps.get_model("budgets", "Budget")
    Budget.objects.filter(enforce=False).update(mode="alert-only")


def to_flag(apps, schema_editor):
    Budget = apps.get_model("budgets", "Budget")
    Budget.objects.filter(mode="alert-only").update(enforce=False)


class Migration(migrations.Migration):
    dependencies = [("budgets", "0004_alert_per_agent")]

    operations = [
        migrations.AddField(
            model_name="budget",
            name="mode",
            field=models.CharField(
                choices=[
                    ("enforce", "Enforce: refuse past the limit"),
                    ("alert-only", "Alert only"),
                    ("ask", "Ask a person past the limit"),
                ],
                default="enforce",
                help_text=(
                    "At the limit: refuse new actions and requests (enforce), only alert, or "
                    "have a person approve each (ask; an approval raises this period's cap). "
                    "Cost reports are always recorded."
                ),
                max_length=16,
            ),
        ),
        migrations.RunPython(to_mode, to_flag),
        migrations.RemoveField(model_name="budget", name="enforce"),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.CheckConstraint(
                condition=models.Q(mode__in=["enforce", "alert-only", "ask"]), name="budget_mode"
            ),
        ),
        migrations.AddField(
            model_name="budgetwindow",
            name="raised_cents",
            field=models.DecimalField(decimal_places=8, default=Decimal(0), max_digits=24),
        ),
    ]
