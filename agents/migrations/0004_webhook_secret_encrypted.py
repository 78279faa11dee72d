"""Webhook secrets move from plain text to encrypted (agents.webhook_secrets), and may be
rotated with a grace window. Every stored secret is encrypted as it is, so agents that already
verify callbacks keep working; reversing decrypts them back."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import migrations, models

import agents.models


def _fernet() -> MultiFernet:
    # A frozen copy of agents.webhook_secrets.fernet_key (v1), so this migration means the
    # same thing whatever that module becomes.
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet(
        [
            Fernet(
                base64.urlsafe_b64encode(
                    HKDF(
                        algorithm=hashes.SHA256(),
                        length=32,
                        salt=None,
                        info=b"oversight/agents/webhook-secret-encryption/v1",
                    ).derive(key.encode())
                )
            )
            for key in keys
        ]
    )


def encrypt_secrets(apps: Any, schema_editor: Any) -> None:
    Agent = apps.get_model("agents", "Agent")
    fernet = _fernet()
    for agent in Agent.objects.only("pk", "webhook_secret").iterator():
        encrypted = fernet.encrypt(agent.webhook_secret.encode()).decode("ascii")
        Agent.objects.filter(pk=agent.pk).update(webhook_secret_encrypted=encrypted)


def decrypt_secrets(apps: Any, schema_editor: Any) -> None:
    Agent = apps.get_model("agents", "Agent")
    fernet = _fernet()
    for agent in Agent.objects.only("pk", "webhook_secret_encrypted").iterator():
        plain = fernet.decrypt(agent.webhook_secret_encrypted.encode("ascii")).decode()
        # The old column holds 64 characters; today's secrets (whsec_ + 43) fit.
        Agent.objects.filter(pk=agent.pk).update(webhook_secret=plain)


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0003_agent_reenable_request"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="webhook_secret_encrypted",
            field=models.TextField(default="", editable=False),
        ),
        migrations.AddField(
            model_name="agent",
            name="previous_webhook_secret_encrypted",
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name="agent",
            name="previous_webhook_secret_expires_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="agent",
            name="webhook_secret_rotated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets, elidable=False),
        migrations.RemoveField(model_name="agent", name="webhook_secret"),
        migrations.AlterField(
            model_name="agent",
            name="webhook_secret_encrypted",
            field=models.TextField(
                default=agents.models._new_encrypted_webhook_secret, editable=False
            ),
        ),
    ]
