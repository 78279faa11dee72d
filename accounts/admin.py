from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db import transaction
from django.http import HttpRequest

from accounts.models import User
from audit.events import EventType
from audit.services import record_event


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "get_full_name", "email", "tier", "is_active", "last_login")
    list_filter = ("tier", "is_active", "groups")
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        ("Approver", {"fields": ("tier",)}),
    )

    @transaction.atomic
    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:  # people created here are audited like those from `create_user`
            record_event(
                event_type=EventType.USER_CREATED,
                actor=request.user,  # type: ignore[arg-type]
                subject=obj,
                payload={"username": obj.username, "roles": [], "tier": obj.tier, "via": "admin"},
            )
