"""Admin: grants are read-only records; the one change, revoking, goes through the service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from grants import services
from grants.models import Grant
from oversight.admin import ReadOnlyAdmin


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "agent",
        "action",
        "kind",
        "risk_level",
        "granted_by",
        "uses",
        "max_uses",
        "expires_at",
        "revoked_at",
        "voided_at",
    )
    list_filter = ("kind", "risk_level")
    search_fields = ("agent__name", "action", "granted_by__username")
    list_select_related = ("agent", "granted_by")
    actions = ["revoke"]

    @admin.action(description="Revoke the selected grants")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Grant]) -> None:
        revoked = 0
        for grant in queryset:
            try:
                revoked += services.revoke_grant(
                    grant=grant,
                    revoked_by=request.user,  # type: ignore[arg-type]
                    reason="revoked in the admin",
                )
            except services.GrantRefused as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return
        self.message_user(request, f"{revoked} grant(s) revoked.", messages.SUCCESS)
