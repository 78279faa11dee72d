from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "get_full_name", "email", "tier", "is_active", "last_login")
    list_filter = ("tier", "is_active", "groups")
    fieldsets = (
        *(BaseUserAdmin.fieldsets or ()),
        ("Approver", {"fields": ("tier",)}),
    )
