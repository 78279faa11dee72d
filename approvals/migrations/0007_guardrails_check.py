"""Requests record the guardrails check that admitted them (SPEC §3, §6): the policy version
and the reasons; `risk_source` says `policy` or `claim`."""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


def name_sources(apps, schema_editor):
    # Before policies, the agent's claim set every request's risk.
    ApprovalRequest = apps.get_model("approvals", "ApprovalRequest")
    ApprovalRequest.objects.exclude(risk_source__in=["policy", "claim"]).update(risk_source="claim")


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0006_fewer_request_indexes"),
        ("guardrails", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalrequest",
            name="check_reasons",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="approvalrequest",
            name="policy_version",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="guardrails.policyversion",
            ),
        ),
        migrations.AlterField(
            model_name="approvalrequest",
            name="risk_source",
            field=models.CharField(
                help_text="What set the effective risk: policy, or the agent's claim.",
                max_length=200,
            ),
        ),
        migrations.RunPython(name_sources, migrations.RunPython.noop),
    ]
