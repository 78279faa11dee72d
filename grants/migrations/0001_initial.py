from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("agents", "0008_keyring_ignores_failure_count"),
        ("approvals", "0010_idempotency_scope"),
        ("guardrails", "0003_policy_set_version"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Grant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "action",
                    models.CharField(help_text="As policies look names up.", max_length=200),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("exact", "This exact call"),
                            ("pinned", "This action with pinned arguments"),
                        ],
                        max_length=16,
                    ),
                ),
                ("params_sha256", models.CharField(blank=True, max_length=64)),
                ("pins", models.JSONField(blank=True, default=dict)),
                (
                    "risk_level",
                    models.CharField(
                        choices=[
                            ("low", "Low"),
                            ("medium", "Medium"),
                            ("high", "High"),
                            ("critical", "Critical"),
                        ],
                        max_length=16,
                    ),
                ),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("expires_at", models.DateTimeField()),
                ("max_uses", models.PositiveIntegerField(blank=True, null=True)),
                ("uses", models.PositiveIntegerField(default=0)),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("revoked_at", models.DateTimeField(blank=True, null=True)),
                ("revoke_reason", models.CharField(blank=True, max_length=500)),
                ("voided_at", models.DateTimeField(blank=True, null=True)),
                (
                    "agent",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="grants",
                        to="agents.agent",
                    ),
                ),
                (
                    "granted_by",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="grants_made",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "made_from",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="grants",
                        to="approvals.approvalrequest",
                    ),
                ),
                (
                    "policy_version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="guardrails.policyversion",
                    ),
                ),
                (
                    "revoked_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(
                        condition=models.Q(
                            ("revoked_at__isnull", True), ("voided_at__isnull", True)
                        ),
                        fields=["agent", "action"],
                        name="grant_agent_action_live",
                    ),
                    models.Index(fields=["expires_at"], name="grant_expiry"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("kind", "exact"), models.Q(("params_sha256", ""), _negated=True)
                            ),
                            models.Q(("kind", "pinned"), ("params_sha256", "")),
                            _connector="OR",
                        ),
                        name="grant_kind_fields",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("max_uses__isnull", True),
                            models.Q(("max_uses__gte", 1), ("uses__lte", models.F("max_uses"))),
                            _connector="OR",
                        ),
                        name="grant_uses_within_max",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("expires_at__gt", models.F("created_at"))),
                        name="grant_expires_after_created",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("risk_level", "critical"), _negated=True),
                        name="grant_never_critical",
                    ),
                ],
            },
        ),
    ]
