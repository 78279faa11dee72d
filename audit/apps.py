from __future__ import annotations

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from audit import checks, receivers, roles

        receivers.connect()
        checks.register()
        post_migrate.connect(roles.after_migrate, sender=self)
