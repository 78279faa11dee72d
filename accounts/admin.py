"""Admin for people. What someone may do (roles, tier, active, superuser) changes only through
`accounts.services.change_access`, with its checks and a `user.changed` audit event; new people
are audited like those from `create_user`. Per-user permissions are not offered: access is
the roles (groups) of SPEC §7."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest

from accounts import services
from accounts.models import Delegation, User
from audit.events import EventType
from audit.services import record_event
from oversight.admin import ReadOnlyAdmin


class AccessForm(UserChangeForm):
    """The change form, refusing what `change_access` would refuse, as form errors."""

    actor: User | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        roles = sorted(group.name for group in data.get("groups", []))
        tier = data.get("tier", "")
        for field, problems in services.access_problems(roles, tier).items():
            self.add_error("groups" if field == "roles" else field, problems)
        refusal = services.refusal_to_change_access(
            self.actor,
            User.objects.get(pk=self.instance.pk),
            roles=roles,
            is_active=data.get("is_active", self.instance.is_active),
            is_superuser=data.get("is_superuser", self.instance.is_superuser),
        )
        if refusal:
            self.add_error(None, refusal)
        return data


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = AccessForm
    list_display = ("username", "get_full_name", "email", "tier", "is_active", "last_login")
    list_filter = ("tier", "is_active", "groups")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Access (audited)",
            {"fields": ("groups", "tier", "is_active", "is_superuser", "is_staff")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    readonly_fields = ("is_staff", "last_login", "date_joined")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A superuser's access and password are for superusers to change (else any staff member
        # with `change_user` could take one over by setting its password).
        actor = request.user
        if obj is not None and obj.is_superuser and not actor.is_superuser:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: their votes, keys and trail entries keep a name

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        # Django's password form for another person saves, then logs the change: the audit
        # trail records it there (the one place that view lets us in).
        if request.path.endswith("/password/") and obj.pk != request.user.pk:
            services.password_changed(user=obj, actor=request.user)  # type: ignore[arg-type]
        return super().log_change(request, obj, message)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = list(self.readonly_fields)
        if not request.user.is_superuser:
            fields.append("is_superuser")
        return fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None:
            form.actor = request.user  # type: ignore[attr-defined]
        return form

    @transaction.atomic
    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if change:
            # Only who they are here; what they may do goes through the service (save_related).
            obj.save(update_fields=["username", "first_name", "last_name", "email"])
            return
        super().save_model(request, obj, form, change)
        # People created here are audited like those from `create_user`.
        record_event(
            event_type=EventType.USER_CREATED,
            actor=request.user,  # type: ignore[arg-type]
            subject=obj,
            payload={"username": obj.username, "roles": [], "tier": obj.tier, "via": "admin"},
        )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if not change:
            return super().save_related(request, form, formsets, change)
        data = form.cleaned_data
        services.change_access(
            user=form.instance,
            roles=[group.name for group in data["groups"]],
            tier=data["tier"],
            is_active=data["is_active"],
            is_superuser=data.get("is_superuser", form.instance.is_superuser),
            actor=request.user,  # type: ignore[arg-type]
        )
        return None


# Roles are groups the code knows by name (SPEC §7): renaming or deleting one in the admin would
# silently take everyone's access away. Membership is edited on each person, above.
admin.site.unregister(Group)


@admin.register(Delegation)
class DelegationAdmin(ReadOnlyAdmin):
    """Who stood in for whom, and when (people set it on their Away page; it is audited)."""

    list_display = ("delegator", "delegate", "starts_at", "ends_at", "ended_at", "note")
    list_select_related = ("delegator", "delegate")
    search_fields = ("delegator__username", "delegate__username")
    actions = ["end_now"]

    @admin.action(description="End the selected delegations now")
    def end_now(self, request: HttpRequest, queryset: Any) -> None:
        for delegation in queryset.select_related("delegator"):
            services.end_away(person=delegation.delegator, actor=request.user)  # type: ignore[arg-type]
