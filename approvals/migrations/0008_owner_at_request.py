"""Each request keeps its agent's owner at the time it asked (SPEC §2: separation of duties).
Requests made before this migration get the owner as of now, the nearest record there is."""

from __future__ import annotations

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    request_model = apps.get_model("approvals", "ApprovalRequest")
    agent_model = apps.get_model("agents", "Agent")
    owner = agent_model.objects.filter(pk=OuterRef("agent_id")).values("owner_id")[:1]
    request_model.objects.update(owner_at_request=Subquery(owner))


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0007_guardrails_check"),
        ("agents", "0005_allow_self_approval"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="approvalrequest",
            name="owner_at_request",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
